//! The systemd files in `deploy/systemd/` are what systemd's own tools accept:
//! `systemd-analyze verify` passes both units (with ExecStart pointing at this build) without a
//! word about them, `systemd-analyze security` rates the node unit's sandbox at most 2.0
//! exposure, and the sysusers and tmpfiles snippets apply to an empty root. The units' command
//! lines (the probe unit with the example environment file) are accepted by `arbiter` itself.
//! Negative controls: a typo'd directive, a missing binary, an unhardened unit and the tmpfiles
//! snippet without its user are each refused.
//!
//! systemd-analyze verify needs no running systemd, only the `systemd` package (.ci/run
//! installs it); without it these tests say they skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the units expect the binary; the tests point it at this build instead.
const INSTALLED_BIN: &str = "/usr/local/bin/arbiter";

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd")
}

fn read_unit(name: &str) -> String {
    std::fs::read_to_string(systemd_dir().join(name)).expect("unit file")
}

/// `tool` is on PATH; otherwise the test says it skipped.
fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        eprintln!("skipped: {tool} not found");
    }
    found
}

/// `unit` with its ExecStart binary replaced by `bin`.
fn with_binary(unit: &str, bin: &Path) -> String {
    assert!(
        unit.contains(INSTALLED_BIN),
        "the unit runs {INSTALLED_BIN}"
    );
    unit.replace(INSTALLED_BIN, &bin.display().to_string())
}

/// `systemd-analyze ARGS DIR/NAME` with `text` saved as that unit file.
fn analyze(dir: &Path, name: &str, text: &str, args: &[&str]) -> Output {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write unit");
    Command::new("systemd-analyze")
        .args(args)
        .arg(&path)
        .output()
        .expect("systemd-analyze runs")
}

/// `systemd-analyze verify` on `text` as `dir/name`: Ok if it exits 0 and says nothing about
/// the unit (unknown directives are only warnings, with exit status 0).
fn verify(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let out = analyze(dir, name, text, &["verify", "--man=no"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && !said.lines().any(|l| l.contains(name)) {
        Ok(())
    } else {
        Err(format!("exit {:?}: {said}", out.status.code()))
    }
}

/// `systemd-analyze security --offline=true` on `text` as `dir/name`: whether its exposure is
/// at most 2.0 (`--threshold` is on the 0-100 scale; the report prints 0.0-10.0).
fn exposure_at_most_2(dir: &Path, name: &str, text: &str) -> (bool, String) {
    let args = ["security", "--offline=true", "--no-pager", "--threshold=20"];
    let out = analyze(dir, name, text, &args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The units as installed (the probe unit as the instance for London).
const UNITS: [(&str, &str); 2] = [
    ("arbiter.service", "arbiter.service"),
    ("arbiter-probe@.service", "arbiter-probe@london.service"),
];

/// Calls `check(file, installed name, unit text, temp dir)` for each unit, its ExecStart
/// pointing at this build; without systemd-analyze, says it skipped.
fn for_each_unit(check: impl Fn(&str, &str, &str, &Path)) {
    if !have("systemd-analyze") {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_arbiter"));
    for (file, name) in UNITS {
        let dir = tempfile::tempdir().expect("temp dir");
        check(file, name, &with_binary(&read_unit(file), bin), dir.path());
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    for_each_unit(|file, name, unit, dir| {
        if let Err(said) = verify(dir, name, unit) {
            panic!("{file} does not verify: {said}");
        }
        // Negative controls: systemd-analyze does catch a typo'd directive and a missing binary.
        let typo = unit.replacen("NoNewPrivileges=", "NoNewPrivilege=", 1);
        assert_ne!(typo, unit);
        assert!(
            verify(dir, name, &typo).is_err(),
            "{file}: a typo'd directive passed"
        );
        let missing = with_binary(&read_unit(file), &dir.join("no-such-arbiter"));
        assert!(
            verify(dir, name, &missing).is_err(),
            "{file}: a missing ExecStart binary passed"
        );
    });
}

#[test]
fn unit_sandboxes_stay_hardened() {
    for_each_unit(|file, name, unit, dir| {
        let (ok, report) = exposure_at_most_2(dir, name, unit);
        assert!(ok, "{file}: exposure above 2.0:\n{report}");
        // Negative control: the same unit without its sandbox is rated far above.
        let bare: String = unit
            .lines()
            .take_while(|l| !l.starts_with("UMask="))
            .chain(["", "[Install]", "WantedBy=multi-user.target"])
            .map(|l| format!("{l}\n"))
            .collect();
        let (ok, _) = exposure_at_most_2(dir, name, &bare);
        assert!(!ok, "{file}: an unhardened copy was rated at most 2.0");
    });
}

#[test]
fn sysusers_and_tmpfiles_snippets_apply_to_an_empty_root() {
    if !have("systemd-sysusers") || !have("systemd-tmpfiles") {
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join("etc")).expect("etc");
    let root_arg = format!("--root={}", root.path().display());
    let tmpfiles = || {
        Command::new("systemd-tmpfiles")
            .args(["--create", &root_arg])
            .arg(systemd_dir().join("arbiter.tmpfiles"))
            .output()
            .expect("systemd-tmpfiles runs")
    };
    // Negative control: the directories' group does not exist before sysusers made it.
    assert!(
        !tmpfiles().status.success(),
        "tmpfiles resolved the group arbiter in an empty root"
    );

    let out = Command::new("systemd-sysusers")
        .arg(&root_arg)
        .arg(systemd_dir().join("arbiter.sysusers"))
        .output()
        .expect("systemd-sysusers runs");
    assert!(
        out.status.success(),
        "sysusers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("arbiter:"))
        .expect("user arbiter");
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!(fields[5], "/var/lib/arbiter", "home is the state dir");
    assert_eq!(fields[6], "/usr/sbin/nologin");
    let gid: u32 = fields[3].parse().expect("gid");

    let out = tmpfiles();
    assert!(
        out.status.success(),
        "tmpfiles: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for dir in ["etc/arbiter", "etc/arbiter/tls"] {
        let meta = std::fs::metadata(root.path().join(dir)).expect(dir);
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750, "{dir} mode");
        assert_eq!((meta.uid(), meta.gid()), (0, gid), "{dir} is root:arbiter");
    }
}

/// The words of a unit's ExecStart= after the binary, with `%i` = `instance` and each
/// unbraced `$VAR` split into words from `env` (as systemd does).
fn exec_start_args(unit: &str, instance: &str, env: &[(String, String)]) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some(INSTALLED_BIN));
    words
        .flat_map(|w| match w.strip_prefix('$') {
            Some(var) => env
                .iter()
                .find(|(k, _)| k == var)
                .unwrap_or_else(|| panic!("${var} is not in the environment file"))
                .1
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            None => vec![w.replace("%i", instance)],
        })
        .collect()
}

/// KEY=VALUE lines of an environment file (no quoting: the example uses none).
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .expect("environment file")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Whether `arbiter ARGS --help` exits 0: clap stops at `--help` only after every flag before
/// it parsed, so this checks the command line without starting anything.
fn arbiter_accepts(args: &[String]) -> bool {
    Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(args)
        .arg("--help")
        .output()
        .expect("arbiter runs")
        .status
        .success()
}

#[test]
fn unit_command_lines_are_accepted_by_arbiter() {
    let serve = exec_start_args(&read_unit("arbiter.service"), "", &[]);
    assert_eq!(serve, ["serve", "--config", "/etc/arbiter/node.toml"]);
    assert!(arbiter_accepts(&serve));

    let env = env_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/three-region/probe-london.env"),
    );
    for key in ["ARBITER_CA", "ARBITER_TOKEN_FILE"] {
        assert!(env.iter().any(|(k, _)| k == key), "the env file sets {key}");
    }
    let probe = exec_start_args(&read_unit("arbiter-probe@.service"), "london", &env);
    assert!(
        arbiter_accepts(&probe),
        "arbiter refuses the probe unit's command line: {probe:?}"
    );
    // Negative control: a misspelt flag is refused.
    let typo: Vec<String> = probe
        .iter()
        .map(|a| a.replace("--target", "--targt"))
        .collect();
    assert!(!arbiter_accepts(&typo), "arbiter accepted --targt");
}
