//! The access log read back as numbered events, for `GET /api/v1/events`.
//!
//! An event's id is its line number in the log (from 1): the log is only ever appended to,
//! so ids are stable and a client pages forward with `since=<last id>`. A line that is not
//! a JSON object (a torn last line after a power cut) keeps its number and is skipped.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;

use serde_json::{Map, Value};

/// Where a page starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    /// After the event with this id.
    Id(u64),
    /// After this time.
    Time(jiff::Timestamp),
}

impl std::str::FromStr for Since {
    type Err = String;
    fn from_str(s: &str) -> Result<Since, String> {
        if let Ok(id) = s.parse::<u64>() {
            return Ok(Since::Id(id));
        }
        s.parse::<jiff::Timestamp>().map(Since::Time).map_err(|_| {
            format!(
                "since={:?} is neither an event id nor an RFC 3339 time (e.g. \
                 2026-12-03T10:00:00Z)",
                crate::config::clip(s)
            )
        })
    }
}

/// The most events one request returns.
pub const MAX_LIMIT: usize = 1000;
/// The longest line read; longer lines (never written by the daemon) are skipped.
const MAX_LINE: usize = 64 * 1024;

/// A page of events, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Each record with its `id`.
    pub events: Vec<Value>,
    /// The id of the last line in the log (a client that wants only new events passes it
    /// as `since` next time).
    pub last_id: u64,
}

/// Reads a page: without `since`, the latest `limit` events; with it, the first `limit`
/// events after it.
pub fn read(log: &Path, since: Option<&Since>, limit: usize) -> std::io::Result<Page> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let file = match std::fs::File::open(log) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Page {
                events: Vec::new(),
                last_id: 0,
            })
        }
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut events = std::collections::VecDeque::new();
    let mut id = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') && line.len() <= MAX_LINE {
            // The end, or a last line still being written: it gets its id once complete.
            break;
        }
        if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest)?;
        }
        id += 1;
        let wanted = match since {
            None => true,
            Some(Since::Id(after)) => id > *after,
            Some(Since::Time(_)) => true,
        };
        if !wanted || (since.is_some() && events.len() >= limit) {
            continue;
        }
        let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(line.trim_ascii()) else {
            continue;
        };
        if let Some(Since::Time(after)) = since {
            let time = record
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if time.is_none_or(|t| t <= *after) {
                continue;
            }
        }
        let mut with_id = Map::with_capacity(record.len() + 1);
        with_id.insert("id".into(), Value::from(id));
        with_id.extend(record);
        events.push_back(Value::Object(with_id));
        if since.is_none() && events.len() > limit {
            events.pop_front();
        }
    }
    // A full page after `since` ends at its last event: the next page starts there.
    let last_id = match (since, events.back()) {
        (Some(_), Some(last)) if events.len() >= limit => {
            last.get("id").and_then(Value::as_u64).unwrap_or(id)
        }
        _ => id,
    };
    Ok(Page {
        events: events.into(),
        last_id,
    })
}

/// The record with this id, if any.
pub fn get(log: &Path, id: u64) -> std::io::Result<Option<Map<String, Value>>> {
    if id == 0 {
        return Ok(None);
    }
    let page = read(log, Some(&Since::Id(id - 1)), 1)?;
    Ok(page.events.into_iter().next().and_then(|e| match e {
        Value::Object(mut m) if m.get("id") == Some(&Value::from(id)) => {
            m.remove("id");
            Some(m)
        }
        _ => None,
    }))
}

/// A snapshot file name from a record, if it is a plain name the daemon could have
/// written (never a path: the API serves nothing outside the snapshot directory).
pub fn snapshot_name(record: &Map<String, Value>) -> Option<&str> {
    let name = record.get("snapshot")?.as_str()?;
    let plain = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.ends_with(".jpg")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    plain.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), lines.join("\n") + "\n").unwrap();
        file
    }

    fn ids(page: &Page) -> Vec<u64> {
        page.events
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect()
    }

    const LINES: [&str; 5] = [
        r#"{"time":"2026-12-01T08:00:00.000Z","event":"start"}"#,
        r#"{"time":"2026-12-01T08:01:00.000Z","event":"unlock","person":"ada"}"#,
        r#"{"time":"2026-12-01T08:02:0"#,
        r#"{"time":"2026-12-01T08:03:00.000Z","event":"denied-unknown"}"#,
        r#"{"time":"2026-12-01T08:04:00.000Z","event":"relock","person":"ada"}"#,
    ];

    #[test]
    fn without_since_the_latest_events_come_oldest_first_with_their_line_numbers() {
        let file = log(&LINES);
        let page = read(file.path(), None, 2).unwrap();
        assert_eq!(ids(&page), [4, 5]);
        assert_eq!(page.last_id, 5);
        assert_eq!(page.events[1]["person"], "ada");
    }

    #[test]
    fn since_an_id_pages_forward_and_skips_torn_lines() {
        let file = log(&LINES);
        let page = read(file.path(), Some(&Since::Id(1)), 2).unwrap();
        assert_eq!(ids(&page), [2, 4]);
        assert_eq!(
            page.last_id, 4,
            "the next page starts after the last event returned"
        );
        let next = read(file.path(), Some(&Since::Id(page.last_id)), 2).unwrap();
        assert_eq!(ids(&next), [5]);
        assert_eq!(next.last_id, 5);
        let page = read(file.path(), Some(&Since::Id(5)), 10).unwrap();
        assert!(page.events.is_empty());
    }

    #[test]
    fn since_a_time_returns_later_events() {
        let file = log(&LINES);
        let since: Since = "2026-12-01T08:01:00Z".parse().unwrap();
        assert_eq!(ids(&read(file.path(), Some(&since), 10).unwrap()), [4, 5]);
        assert!("yesterday"
            .parse::<Since>()
            .unwrap_err()
            .contains("RFC 3339"));
    }

    #[test]
    fn a_last_line_still_being_written_waits_for_its_newline() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), format!("{}\n{{\"time\":\"2026", LINES[0])).unwrap();
        let page = read(file.path(), None, 10).unwrap();
        assert_eq!(ids(&page), [1]);
        assert_eq!(page.last_id, 1);
    }

    #[test]
    fn a_missing_log_is_an_empty_page() {
        let page = read(Path::new("/nonexistent/facelock-audit.log"), None, 10).unwrap();
        assert_eq!(page.last_id, 0);
    }

    #[test]
    fn one_event_is_found_by_id() {
        let file = log(&LINES);
        assert_eq!(get(file.path(), 2).unwrap().unwrap()["person"], "ada");
        assert!(get(file.path(), 3).unwrap().is_none(), "torn line");
        assert!(get(file.path(), 0).unwrap().is_none());
        assert!(get(file.path(), 99).unwrap().is_none());
    }

    #[test]
    fn only_plain_snapshot_names_are_served() {
        let record = |name: &str| {
            let mut m = Map::new();
            m.insert("snapshot".into(), Value::from(name));
            m
        };
        let ok = record("20261201T080100.000Z-1-unlock-ada.jpg");
        assert!(snapshot_name(&ok).is_some());
        for bad in [
            "../../etc/passwd",
            "/etc/shadow.jpg",
            "a/b.jpg",
            ".hidden.jpg",
            "x.png",
            "",
        ] {
            assert!(snapshot_name(&record(bad)).is_none(), "{bad}");
        }
    }
}
