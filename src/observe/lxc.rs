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

#[cfg(test)]
mod tests {
    use super::*;

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
