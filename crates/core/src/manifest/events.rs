//! The YAML event stream of a text, from libyaml: the parser serde_yaml itself runs on, so the
//! events and their positions are exactly those the loader's `Value` is built from.
//!
//! serde_yaml keeps no positions and hands out no events, so the loader reads the events here,
//! once per file, to find where every node is (see [`super::locate`]) and to refuse, before
//! serde_yaml parses anything, what it must not be handed: nesting deep enough to make the
//! parser's work quadratic, and YAML tags.
//!
//! This is the only unsafe code of the crate: libyaml-rs is libyaml transpiled, with its C
//! interface. Everything unsafe is in this module, behind [`Events`], an iterator that owns the
//! parser and frees it when dropped.

use std::marker::PhantomData;

use libyaml_rs as sys;

/// One parser event: what it is and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub kind: EventKind,
    pub mark: Mark,
}

/// Where an event starts: 1-based line, and column in characters, as serde_yaml counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EventKind {
    DocumentStart,
    DocumentEnd,
    /// `*name`: the anchor's name.
    Alias(Vec<u8>),
    Scalar {
        anchor: Option<Vec<u8>>,
        tag: Option<String>,
        value: String,
        /// Unquoted, so its type is resolved from its text (`1` is a number, `"1"` a string).
        plain: bool,
    },
    SequenceStart {
        anchor: Option<Vec<u8>>,
        tag: Option<String>,
    },
    SequenceEnd,
    MappingStart {
        anchor: Option<Vec<u8>>,
        tag: Option<String>,
    },
    MappingEnd,
}

/// The events of one text, in order. The iteration ends at the end of the stream or at the
/// first syntax error (serde_yaml, which parses the same text, reports that error).
pub(crate) struct Events<'t> {
    parser: Box<sys::yaml_parser_t>,
    done: bool,
    /// The parser reads the text in place: it must outlive the parser.
    text: PhantomData<&'t str>,
}

impl<'t> Events<'t> {
    pub(crate) fn new(text: &'t str) -> Events<'t> {
        let mut parser = Box::<sys::yaml_parser_t>::new_uninit();
        // SAFETY: `yaml_parser_initialize` zeroes the whole struct before setting up its
        // buffers, so the struct is initialized once it returns (it fails only when allocating
        // fails, which Rust's allocator would not survive either; the zeroed parser is then
        // still safe to delete). The parser is boxed and never moves afterwards:
        // `yaml_parser_set_input_string` keeps a pointer to the parser itself. The text is
        // borrowed for `'t`, which outlives `Events`, and so the parser.
        unsafe {
            let initialized = sys::yaml_parser_initialize(parser.as_mut_ptr()).ok;
            let mut parser = parser.assume_init();
            if initialized {
                let raw = &raw mut *parser;
                sys::yaml_parser_set_encoding(raw, sys::YAML_UTF8_ENCODING);
                sys::yaml_parser_set_input_string(raw, text.as_ptr(), text.len() as _);
            }
            Events {
                parser,
                done: !initialized,
                text: PhantomData,
            }
        }
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        // SAFETY: the parser was initialized in `new` and is deleted once, here.
        unsafe { sys::yaml_parser_delete(&raw mut *self.parser) }
    }
}

impl Iterator for Events<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if self.done {
                return None;
            }
            let mut event = std::mem::MaybeUninit::<sys::yaml_event_t>::uninit();
            // SAFETY: the parser is initialized and alive; `yaml_parser_parse` fills the event
            // (zeroing it first) when it returns OK, and the event is read, then deleted, before
            // the next call. After a failure the parser is not called again.
            let converted = unsafe {
                if sys::yaml_parser_parse(&raw mut *self.parser, event.as_mut_ptr()).fail {
                    self.done = true;
                    return None;
                }
                let event = event.as_mut_ptr();
                let converted = convert(&*event);
                sys::yaml_event_delete(event);
                converted
            };
            match converted {
                Converted::Event(event) => return Some(event),
                Converted::End => self.done = true,
                Converted::Skip => {}
            }
        }
    }
}

enum Converted {
    Event(Event),
    /// Stream start and the like: nothing a caller looks at.
    Skip,
    End,
}

/// Copies what callers need out of libyaml's event.
///
/// # Safety
/// `event` must be an event `yaml_parser_parse` has just filled: its union member is the one
/// its type says, and its strings are valid (NUL-terminated, or `length` bytes for a value).
unsafe fn convert(event: &sys::yaml_event_t) -> Converted {
    let mark = Mark {
        line: event.start_mark.line as usize + 1,
        column: event.start_mark.column as usize + 1,
    };
    // SAFETY (for every block below): per this function's contract, the union member read is
    // the one the event's type selects, and its pointers are null or valid C strings.
    let kind = match event.type_ {
        sys::YAML_STREAM_END_EVENT => return Converted::End,
        sys::YAML_DOCUMENT_START_EVENT => EventKind::DocumentStart,
        sys::YAML_DOCUMENT_END_EVENT => EventKind::DocumentEnd,
        sys::YAML_ALIAS_EVENT => {
            let anchor = unsafe { c_bytes(event.data.alias.anchor) };
            EventKind::Alias(anchor.unwrap_or_default())
        }
        sys::YAML_SCALAR_EVENT => unsafe {
            let scalar = &event.data.scalar;
            let value = if scalar.value.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(scalar.value, scalar.length as usize)
            };
            EventKind::Scalar {
                anchor: c_bytes(scalar.anchor),
                tag: c_bytes(scalar.tag).map(|t| String::from_utf8_lossy(&t).into_owned()),
                value: String::from_utf8_lossy(value).into_owned(),
                plain: scalar.style == sys::YAML_PLAIN_SCALAR_STYLE,
            }
        },
        sys::YAML_SEQUENCE_START_EVENT => unsafe {
            let start = &event.data.sequence_start;
            EventKind::SequenceStart {
                anchor: c_bytes(start.anchor),
                tag: c_bytes(start.tag).map(|t| String::from_utf8_lossy(&t).into_owned()),
            }
        },
        sys::YAML_SEQUENCE_END_EVENT => EventKind::SequenceEnd,
        sys::YAML_MAPPING_START_EVENT => unsafe {
            let start = &event.data.mapping_start;
            EventKind::MappingStart {
                anchor: c_bytes(start.anchor),
                tag: c_bytes(start.tag).map(|t| String::from_utf8_lossy(&t).into_owned()),
            }
        },
        sys::YAML_MAPPING_END_EVENT => EventKind::MappingEnd,
        _ => return Converted::Skip,
    };
    Converted::Event(Event { kind, mark })
}

/// The bytes of a NUL-terminated string libyaml allocated; `None` for a null pointer.
///
/// # Safety
/// `ptr` must be null or point to a NUL-terminated string.
unsafe fn c_bytes(ptr: *const u8) -> Option<Vec<u8>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated, per the contract.
    let s = unsafe { std::ffi::CStr::from_ptr(ptr.cast()) };
    Some(s.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<String> {
        Events::new(text)
            .map(|e| {
                let what = match e.kind {
                    EventKind::DocumentStart => "doc".to_owned(),
                    EventKind::DocumentEnd => "/doc".to_owned(),
                    EventKind::Alias(a) => format!("*{}", String::from_utf8_lossy(&a)),
                    EventKind::Scalar { value, tag, .. } => match tag {
                        Some(tag) => format!("{tag} {value}"),
                        None => value,
                    },
                    EventKind::SequenceStart { .. } => "[".to_owned(),
                    EventKind::SequenceEnd => "]".to_owned(),
                    EventKind::MappingStart { .. } => "{".to_owned(),
                    EventKind::MappingEnd => "}".to_owned(),
                };
                format!("{}:{} {what}", e.mark.line, e.mark.column)
            })
            .collect()
    }

    #[test]
    fn events_carry_their_positions() {
        assert_eq!(
            kinds("a: [1, &x b]\nc: *x\n"),
            [
                "1:1 doc", "1:1 {", "1:1 a", "1:4 [", "1:5 1", "1:8 b", "1:12 ]", "2:1 c",
                "2:4 *x", "3:1 }", "3:1 /doc"
            ]
        );
        assert_eq!(kinds("d: !!str x\n")[3], "1:4 tag:yaml.org,2002:str x");
    }

    #[test]
    fn a_syntax_error_ends_the_stream_without_a_panic() {
        let events = kinds("a: [1\nb: 2\n");
        assert_eq!(events[..3], ["1:1 doc", "1:1 {", "1:1 a"]);
        for text in [
            "",
            "\t",
            "a: *nope",
            "- - -",
            "{a: 1",
            "\u{0}",
            "%YAML 9.9\n---\n",
        ] {
            let _ = kinds(text);
        }
    }
}
