//! `--log-format text|json`: the server's log lines, and the per-request
//! line in either form. In JSON every line is one object; a request's
//! carries the same fields as its text line (`peer`, `user`, `op`, `name`,
//! `status`, `bytes`, `time`, `reason`), with `time` in seconds, beside
//! the `timestamp` and `level` every line has.

use std::io::Write;
use std::time::Duration;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text each, as people read them.
    #[default]
    Text,
    /// One JSON object each, for log collectors.
    Json,
}

/// The log target of per-request lines, whose JSON message is an object
/// of its own (merged into the line's object, not quoted).
pub const REQUEST_TARGET: &str = "backup_server::request";

/// One finished request, as logged.
#[derive(Debug)]
pub struct RequestLine<'a> {
    pub peer: std::net::SocketAddr,
    pub user: u32,
    pub op: &'a str,
    pub name: &'a str,
    /// `None`: no response was sent.
    pub status: Option<u16>,
    pub bytes: u64,
    pub time: Duration,
    pub reason: Option<&'a str>,
}

impl RequestLine<'_> {
    /// The line's message in `format`.
    pub fn render(&self, format: LogFormat) -> String {
        match format {
            LogFormat::Text => {
                let status = self.status.map_or_else(|| "-".to_string(), |s| s.to_string());
                let reason = self.reason.map(|r| format!(" reason={r:?}")).unwrap_or_default();
                format!(
                    "{} user={} op={} name={:?} status={status} bytes={} time={:.1?}{reason}",
                    self.peer, self.user, self.op, self.name, self.bytes, self.time
                )
            }
            LogFormat::Json => serde_json::json!({
                "peer": self.peer.to_string(),
                "user": self.user,
                "op": self.op,
                "name": self.name,
                "status": self.status,
                "bytes": self.bytes,
                "time": self.time.as_secs_f64(),
                "reason": self.reason,
            })
            .to_string(),
        }
    }
}

/// Starts the logger at `level` in `format`.
pub fn init(level: log::LevelFilter, format: LogFormat) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level).format_target(false);
    if format == LogFormat::Json {
        builder.format(|out, record| {
            let time = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
            let message = record.args().to_string();
            let mut line = serde_json::json!({ "timestamp": time, "level": record.level().as_str() });
            match serde_json::from_str::<serde_json::Value>(&message) {
                Ok(serde_json::Value::Object(fields)) if record.target() == REQUEST_TARGET => {
                    line.as_object_mut().into_iter().for_each(|o| o.extend(fields.clone()));
                }
                _ => line["message"] = serde_json::Value::String(message),
            }
            writeln!(out, "{line}")
        });
    }
    builder.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> RequestLine<'static> {
        RequestLine {
            peer: "127.0.0.1:5000".parse().unwrap(),
            user: 7,
            op: "backup",
            name: "a \"b\".txt",
            status: Some(212),
            bytes: 42,
            time: Duration::from_millis(1500),
            reason: None,
        }
    }

    #[test]
    fn the_text_line_is_todays() {
        assert_eq!(
            line().render(LogFormat::Text),
            "127.0.0.1:5000 user=7 op=backup name=\"a \\\"b\\\".txt\" status=212 bytes=42 time=1.5s"
        );
    }

    #[test]
    fn the_json_line_has_the_same_fields_and_escapes_the_name() {
        let json: serde_json::Value = serde_json::from_str(&line().render(LogFormat::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"peer": "127.0.0.1:5000", "user": 7, "op": "backup", "name": "a \"b\".txt",
                "status": 212, "bytes": 42, "time": 1.5, "reason": null})
        );
    }
}
