//! LXC: `lxc-ls --fancy --fancy-format name,state` lists every container and its state in one
//! call; `lxc-info -n NAME -s` confirms one (`State:          RUNNING`).

use std::collections::BTreeMap;

use thiserror::Error;

use super::ContainerState;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LxcError {
    #[error("lxc-ls line {line}: expected \"NAME STATE\", got {text:?}")]
    BadLine { line: usize, text: String },
    #[error("lxc-ls line {line}: unknown state {state:?} for container {name}")]
    UnknownState {
        line: usize,
        name: String,
        state: String,
    },
    #[error("lxc-info: no \"State:\" line in {text:?}")]
    NoState { text: String },
    #[error("lxc-info: unknown state {state:?}")]
    UnknownInfoState { state: String },
}

/// LXC's state names (lxc_state_t), upper-case as the tools print them.
fn state_of(word: &str) -> Option<ContainerState> {
    Some(match word {
        "RUNNING" => ContainerState::Running,
        "STOPPED" => ContainerState::Stopped,
        "FROZEN" | "FREEZING" | "THAWED" => ContainerState::Frozen,
        "STARTING" => ContainerState::Starting,
        "STOPPING" => ContainerState::Stopping,
        "ABORTING" => ContainerState::Aborting,
        _ => return None,
    })
}

/// Parses `lxc-ls --fancy --fancy-format name,state`.
pub fn parse_ls_fancy(text: &str) -> Result<BTreeMap<String, ContainerState>, LxcError> {
    let mut containers = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let mut words = line.split_whitespace();
        let (Some(name), Some(state), None) = (words.next(), words.next(), words.next()) else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(LxcError::BadLine {
                line: line_no,
                text: line.to_string(),
            });
        };
        if line_no == 1 && name == "NAME" && state == "STATE" {
            continue;
        }
        let parsed = state_of(state).ok_or_else(|| LxcError::UnknownState {
            line: line_no,
            name: name.to_string(),
            state: state.to_string(),
        })?;
        containers.insert(name.to_string(), parsed);
    }
    Ok(containers)
}

/// Parses `lxc-info -n NAME -s`.
pub fn parse_info_state(text: &str) -> Result<ContainerState, LxcError> {
    let state = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("State:"))
        .map(str::trim)
        .ok_or_else(|| LxcError::NoState {
            text: text.to_string(),
        })?;
    state_of(state).ok_or_else(|| LxcError::UnknownInfoState {
        state: state.to_string(),
    })
}

/// How many lines of an LXC log a failure shows.
pub const TAIL_LINES: usize = 10;

/// `lxc.log.file = /var/log/lxc/web.log` → the value; `None` when empty or absent.
pub fn parse_config_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The level and message of an LXC log line:
/// `lxc-start web 20240101120000.123 ERROR    start - ../src/lxc/start.c:start:2197 - No such
/// file or directory - Failed to exec "/sbin/init"` → (`ERROR`, `No such file … "/sbin/init"`).
pub fn parse_log_line(line: &str) -> Option<(&str, &str)> {
    let mut words = line.split_whitespace();
    let (_program, _name, _time, level) =
        (words.next()?, words.next()?, words.next()?, words.next()?);
    // After the level: "MODULE - FILE:FUNC:LINE - MESSAGE".
    let (_, rest) = line.split_once(&format!(" {level} "))?;
    let (_module, rest) = rest.split_once(" - ")?;
    let (_location, message) = rest.split_once(" - ")?;
    Some((level, message.trim()))
}

/// The ERROR lines among `text` (the whole lines, at most the last [`TAIL_LINES`]), or its last
/// lines when none says ERROR; and the first error's message, usually the cause (what follows is
/// LXC unwinding).
pub fn summarize(text: &str) -> (Vec<String>, Option<String>) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| parse_log_line(l).is_some_and(|(level, _)| level == "ERROR"))
        .collect();
    let cause = errors
        .first()
        .and_then(|l| parse_log_line(l))
        .map(|(_, message)| message.to_string());
    let shown = if errors.is_empty() { &lines } else { &errors };
    let tail = shown[shown.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| l.to_string())
        .collect();
    (tail, cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILED_START: &str = include_str!("../../tests/fixtures/lxc/log-failed-start.txt");

    #[test]
    fn log_lines_split_into_level_and_message() {
        let first = FAILED_START.lines().next().expect("a line");
        assert_eq!(
            parse_log_line(first),
            Some((
                "ERROR",
                r#"No such file or directory - Failed to exec "/nonexistent/init""#
            ))
        );
        assert_eq!(parse_log_line("not a log line"), None);
        assert_eq!(parse_log_line(""), None);
    }

    #[test]
    fn the_first_error_is_the_cause_and_warnings_are_left_out() {
        let (tail, cause) = summarize(FAILED_START);
        assert_eq!(tail.len(), 3, "{tail:?}");
        assert!(tail.iter().all(|l| l.contains(" ERROR ")));
        assert_eq!(
            cause.as_deref(),
            Some(r#"No such file or directory - Failed to exec "/nonexistent/init""#)
        );
    }

    #[test]
    fn without_errors_the_last_lines_are_shown() {
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let (tail, cause) = summarize(&text);
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().map(String::as_str), Some("line 29"));
        assert_eq!(cause, None);
        assert_eq!(summarize(""), (Vec::new(), None));
    }

    #[test]
    fn config_values() {
        assert_eq!(
            parse_config_value("lxc.log.file = /var/log/lxc/web.log\n", "lxc.log.file"),
            Some("/var/log/lxc/web.log".into())
        );
        assert_eq!(parse_config_value("lxc.log.file =\n", "lxc.log.file"), None);
        assert_eq!(parse_config_value("", "lxc.log.file"), None);
    }

    #[test]
    fn fancy_listing_with_header() {
        let text = "NAME     STATE   \nweb      RUNNING \ndb       STOPPED \nbatch    FROZEN  \nnew      STARTING\n";
        let map = parse_ls_fancy(text).expect("parses");
        assert_eq!(map["web"], ContainerState::Running);
        assert_eq!(map["db"], ContainerState::Stopped);
        assert_eq!(map["batch"], ContainerState::Frozen);
        assert_eq!(map["new"], ContainerState::Starting);
    }

    #[test]
    fn no_containers_is_an_empty_listing() {
        assert!(parse_ls_fancy("").expect("parses").is_empty());
        assert!(parse_ls_fancy("NAME STATE \n").expect("parses").is_empty());
    }

    #[test]
    fn stopping_and_aborting() {
        let map = parse_ls_fancy("a STOPPING\nb ABORTING\n").expect("parses");
        assert_eq!(map["a"], ContainerState::Stopping);
        assert_eq!(map["b"], ContainerState::Aborting);
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        assert_eq!(
            parse_ls_fancy("NAME STATE\nweb RUNNING extra\n"),
            Err(LxcError::BadLine {
                line: 2,
                text: "web RUNNING extra".into()
            })
        );
        assert!(matches!(
            parse_ls_fancy("web SLEEPING\n"),
            Err(LxcError::UnknownState { line: 1, .. })
        ));
    }

    #[test]
    fn info_state() {
        assert_eq!(
            parse_info_state("State:          RUNNING\n"),
            Ok(ContainerState::Running)
        );
        assert_eq!(
            parse_info_state("State:          STOPPED\n"),
            Ok(ContainerState::Stopped)
        );
        assert!(parse_info_state("Name: x\n").is_err());
    }
}
