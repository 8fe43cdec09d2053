//! What `kubectl logs` can ask of a log: the previous run (`previous`),
//! `timestamps`, `sinceSeconds`/`sinceTime`, `tailLines`, `limitBytes`; and
//! where a container's previous run's log lives (the runtime keeps the
//! current run `<n>.log` and the newest earlier run `<m>.log`, each rotated
//! into `.log.1 ..`; see runtime/src/retention.rs).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ApiError;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    pub container: Option<String>,
    pub tail_lines: Option<i64>,
    pub follow: Option<String>,
    pub previous: Option<String>,
    pub timestamps: Option<String>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

/// One complete log entry: CRI time and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub time: String,
    pub msg: String,
}

/// Complete CRI log lines in `text` (`<time> <stream> <P|F> <msg>`; `P`
/// parts are joined with what follows, kept in `partial` across calls).
/// A line that is not CRI passes through without a time.
pub fn parse(text: &str, partial: &mut String) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break; // incomplete last line: the caller keeps it
        }
        let line = line.trim_end_matches('\n');
        let mut it = line.splitn(4, ' ');
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(ts), Some("stdout" | "stderr"), Some(tag), msg)
                if tag.starts_with('P') || tag.starts_with('F') =>
            {
                partial.push_str(msg.unwrap_or(""));
                if tag.starts_with('F') {
                    out.push(Entry {
                        time: ts.to_string(),
                        msg: std::mem::take(partial),
                    });
                }
            }
            _ => out.push(Entry {
                time: String::new(),
                msg: line.to_string(),
            }),
        }
    }
    out
}

/// Validated options.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    pub timestamps: bool,
    pub since: Option<jiff::Timestamp>,
    pub tail: Option<usize>,
    pub limit: Option<usize>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1"))
}

impl LogQuery {
    pub fn previous(&self) -> bool {
        truthy(&self.previous)
    }
    pub fn follow(&self) -> bool {
        truthy(&self.follow)
    }
    pub fn opts(&self) -> Result<Opts, ApiError> {
        let bad = |param, value: String, reason: &str| ApiError::BadParam {
            param,
            value,
            reason: reason.into(),
        };
        let since = match (self.since_seconds, &self.since_time) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "sinceSeconds",
                    String::new(),
                    "at most one of sinceTime or sinceSeconds may be specified",
                ));
            }
            (Some(s), None) if s < 1 => {
                return Err(bad("sinceSeconds", s.to_string(), "must be greater than 0"));
            }
            (Some(s), None) => Some(
                jiff::Timestamp::now()
                    .checked_sub(jiff::SignedDuration::from_secs(s))
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            ),
            (None, Some(t)) => Some(
                t.parse::<jiff::Timestamp>()
                    .map_err(|e| bad("sinceTime", t.clone(), &e.to_string()))?,
            ),
            (None, None) => None,
        };
        let tail = match self.tail_lines {
            Some(n) if n < 0 => None, // kubectl's default -1: everything
            Some(n) => Some(n as usize),
            None => None,
        };
        let limit = match self.limit_bytes {
            Some(n) if n < 1 => {
                return Err(bad("limitBytes", n.to_string(), "must be greater than 0"));
            }
            Some(n) => Some(n as usize),
            None => None,
        };
        Ok(Opts {
            timestamps: truthy(&self.timestamps),
            since,
            tail,
            limit,
        })
    }
}

impl Opts {
    /// Whether an entry is recent enough for `since`.
    pub fn keep(&self, e: &Entry) -> bool {
        match (&self.since, e.time.parse::<jiff::Timestamp>()) {
            (Some(since), Ok(t)) => t >= *since,
            _ => true,
        }
    }

    /// The text of entries as a client gets it.
    pub fn render(&self, entries: &[Entry]) -> String {
        let mut out = String::new();
        for e in entries {
            if self.timestamps && !e.time.is_empty() {
                out.push_str(&e.time);
                out.push(' ');
            }
            out.push_str(&e.msg);
            out.push('\n');
        }
        out
    }

    /// Select (since, tail) and render a whole log, then cut at `limit`.
    pub fn select(&self, entries: Vec<Entry>) -> String {
        let mut kept: Vec<Entry> = entries.into_iter().filter(|e| self.keep(e)).collect();
        if let Some(n) = self.tail {
            kept.drain(..kept.len().saturating_sub(n));
        }
        let mut text = self.render(&kept);
        if let Some(l) = self.limit {
            cut(&mut text, l);
        }
        text
    }
}

/// Truncate to at most `limit` bytes on a char boundary.
pub fn cut(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut i = limit;
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        text.truncate(i);
    }
}

/// `<n>.log` -> n.
fn run_of(p: &Path) -> Option<u32> {
    p.file_name()?.to_str()?.strip_suffix(".log")?.parse().ok()
}

/// The files of the newest run before the current one, oldest first
/// (`<m>.log.<k>` with the highest k is the oldest, `<m>.log` the newest).
pub fn previous_files(current: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(run)) = (current.parent(), run_of(current)) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(u32, u32, PathBuf)> = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((r, rest)) = name.split_once(".log") else {
            continue;
        };
        let (Ok(r), idx) = (
            r.parse::<u32>(),
            rest.strip_prefix('.').map(str::parse::<u32>),
        ) else {
            continue;
        };
        let idx = match (rest.is_empty(), idx) {
            (true, _) => 0,
            (false, Some(Ok(i))) => i,
            _ => continue,
        };
        if r < run {
            files.push((r, idx, e.path()));
        }
    }
    let Some(prev) = files.iter().map(|f| f.0).max() else {
        return Vec::new();
    };
    files.retain(|f| f.0 == prev);
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    files.into_iter().map(|f| f.2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: &str, m: &str) -> Entry {
        Entry {
            time: t.into(),
            msg: m.into(),
        }
    }

    #[test]
    fn cri_lines() {
        let text = "2024-01-01T00:00:00Z stdout F hello world\n2024-01-01T00:00:01Z stderr P part\n2024-01-01T00:00:01Z stderr F ial\nplain line\n";
        let mut p = String::new();
        let got = parse(text, &mut p);
        assert_eq!(
            got,
            vec![
                e("2024-01-01T00:00:00Z", "hello world"),
                e("2024-01-01T00:00:01Z", "partial"),
                e("", "plain line")
            ]
        );
    }

    #[test]
    fn since_tail_limit_timestamps() {
        let q = LogQuery {
            since_time: Some("2024-01-01T00:00:01Z".into()),
            tail_lines: Some(2),
            timestamps: Some("true".into()),
            ..Default::default()
        };
        let o = q.opts().unwrap();
        let all = vec![
            e("2024-01-01T00:00:00Z", "a"),
            e("2024-01-01T00:00:01Z", "b"),
            e("2024-01-01T00:00:02Z", "c"),
            e("2024-01-01T00:00:03Z", "d"),
        ];
        assert_eq!(
            o.select(all.clone()),
            "2024-01-01T00:00:02Z c\n2024-01-01T00:00:03Z d\n"
        );
        let o = LogQuery {
            limit_bytes: Some(3),
            ..Default::default()
        }
        .opts()
        .unwrap();
        assert_eq!(o.select(all), "a\nb");
        let both = LogQuery {
            since_seconds: Some(1),
            since_time: Some("2024-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert!(both.opts().is_err());
    }

    #[test]
    fn previous_run_files() {
        let d = tempfile::tempdir().unwrap();
        for f in ["0.log", "1.log.2", "1.log.1", "1.log", "2.log", "x.log"] {
            std::fs::write(d.path().join(f), f).unwrap();
        }
        let got: Vec<String> = previous_files(&d.path().join("2.log"))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, vec!["1.log.2", "1.log.1", "1.log"]);
        assert!(previous_files(&d.path().join("0.log")).is_empty());
    }
}
