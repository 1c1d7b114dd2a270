//! Exit codes, the same for every command:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | error: bad input found before sending, a local problem, or an answer the command did not expect |
//! | 2 | usage: the command line does not parse (clap) |
//! | 3 | outcome unknown: the request was sent but not confirmed in time; it may have been applied (look before retrying) |
//! | 4 | refused: the cluster answered and refused; nothing changed (a held lease, a failback before its cooldown, a role that may not) |
//! | 5 | unavailable: no node answered, or there is no leader; nothing changed |
//!
//! A command fails with a [`Failure`] to choose its code; any other error exits 1.

pub const SUCCESS: u8 = 0;
pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const OUTCOME_UNKNOWN: u8 = 3;
pub const REFUSED: u8 = 4;
pub const UNAVAILABLE: u8 = 5;

/// An error with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn unavailable(message: impl Into<String>) -> Failure {
        Failure {
            code: UNAVAILABLE,
            message: message.into(),
        }
    }

    pub fn refused(message: impl Into<String>) -> Failure {
        Failure {
            code: REFUSED,
            message: message.into(),
        }
    }

    pub fn unknown(message: impl Into<String>) -> Failure {
        Failure {
            code: OUTCOME_UNKNOWN,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: USAGE,
            message: message.into(),
        }
    }
}

/// The exit code of a command's error.
pub fn code_of(error: &anyhow::Error) -> u8 {
    error
        .downcast_ref::<Failure>()
        .map_or(ERROR, |failure| failure.code)
}

/// An SDK error as a command's error, with the exit code its kind means.
pub fn sdk(error: arbiter_client::ClientError) -> anyhow::Error {
    let code = sdk_code(&error);
    anyhow::Error::new(Failure {
        code,
        message: error.to_string(),
    })
}

fn sdk_code(error: &arbiter_client::ClientError) -> u8 {
    use arbiter_client::ClientError as E;
    use tonic::Code;
    match error {
        E::NotLeader { .. } | E::Unavailable { .. } => UNAVAILABLE,
        E::OutcomeUnknown { .. } => OUTCOME_UNKNOWN,
        E::Server { code, .. } => match code {
            Code::Unavailable => UNAVAILABLE,
            Code::DeadlineExceeded => OUTCOME_UNKNOWN,
            Code::Unauthenticated
            | Code::PermissionDenied
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::NotFound
            | Code::OutOfRange => REFUSED,
            _ => ERROR,
        },
        E::GaveUp { last, .. } => sdk_code(last),
        E::NoEndpoints
        | E::InvalidEndpoint { .. }
        | E::InvalidRequest { .. }
        | E::MalformedReply { .. } => ERROR,
    }
}
