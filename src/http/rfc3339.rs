//! RFC 3339 UTC timestamps (`2026-06-07T12:12:00Z`, whole seconds as in the seed) from the log's
//! wall-clock milliseconds. Display only: nothing parses them back.

use arbiter_core::WallMillis;

/// Formats `at` as `YYYY-MM-DDTHH:MM:SSZ`, truncating to the second.
pub fn format(at: WallMillis) -> String {
    let seconds = at.0 / 1_000;
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's `civil_from_days`,
/// restricted to non-negative days since the log's times never precede the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(format(WallMillis(0)), "1970-01-01T00:00:00Z");
        // The seed's health-check epochSeconds and traffic-shift updatedAt.
        assert_eq!(
            format(WallMillis(1_770_289_920_000)),
            "2026-02-05T11:12:00Z"
        );
        assert_eq!(
            format(WallMillis(1_780_834_320_999)),
            "2026-06-07T12:12:00Z"
        );
        assert_eq!(format(WallMillis(951_868_799_000)), "2000-02-29T23:59:59Z");
    }
}
