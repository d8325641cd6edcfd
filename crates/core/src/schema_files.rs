//! The files generated from the typed model of the manifest ([`crate::manifest::doc`]) and of the
//! node configuration ([`crate::config::ConfigDoc`]): the two JSON Schemas under docs/ and the
//! key tables of docs/manifest.md.
//!
//! They are committed, so that an editor or a CI job can use them without building converge. A
//! test fails when one is not what the model generates; [`REGENERATE`] rewrites them.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use schemars::{JsonSchema, Schema};
use serde_json::Value;

use crate::config::{ConfigDoc, LISTEN_PATTERN, PROGRAM_PATTERN};
use crate::manifest::doc::{
    ABSOLUTE_PATH_PATTERN, DURATION_PATTERN, ManifestDoc, NAME_PATTERN, OPTIONS_PATTERN, generator,
};

pub const MANIFEST_SCHEMA: &str = "docs/converge-manifest.schema.json";
pub const CONFIG_SCHEMA: &str = "docs/converge-config.schema.json";
pub const REFERENCE: &str = "docs/manifest.md";

/// The command that regenerates every generated file, run from the repository.
pub const REGENERATE: &str = "CONVERGE_REGENERATE=1 cargo test -p converge-core --lib schema_files";

/// The JSON Schema of a manifest file.
pub fn manifest_schema() -> Schema {
    generator().into_root_schema_for::<ManifestDoc>()
}

/// The JSON Schema of the node configuration file.
pub fn config_schema() -> Schema {
    generator().into_root_schema_for::<ConfigDoc>()
}

/// A schema as its file holds it.
pub fn schema_text(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Every generated file, as (path relative to the repository, expected content). The
/// reference's text around its generated sections is read from `repo`.
pub fn generated_files(repo: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let reference = fs::read_to_string(repo.join(REFERENCE))
        .map_err(|e| format!("cannot read {REFERENCE}: {e}"))?;
    Ok(vec![
        (MANIFEST_SCHEMA, schema_text(&manifest_schema())),
        (CONFIG_SCHEMA, schema_text(&config_schema())),
        (REFERENCE, render_reference(&reference)?),
    ])
}

/// Each model of a schema, by schema name, with its keys: the root and every definition that
/// is a mapping with properties.
pub fn models(root_name: &str, schema: &Schema) -> BTreeMap<String, Vec<String>> {
    let keys = |object: &Value| -> Option<Vec<String>> {
        let properties = object.get("properties")?.as_object()?;
        Some(properties.keys().cloned().collect())
    };
    let mut out = BTreeMap::new();
    if let Some(root) = keys(schema.as_value()) {
        out.insert(root_name.to_owned(), root);
    }
    let definitions = schema.get("definitions").and_then(Value::as_object);
    for (name, definition) in definitions.into_iter().flatten() {
        if let Some(found) = keys(definition) {
            out.insert(name.clone(), found);
        }
    }
    out
}

const BEGIN: &str = "<!-- generated from ";
const END: &str = "<!-- end of generated section -->";

/// `markdown` with each generated section rendered anew. A section is a line
/// `<!-- generated from MODEL ... -->`, then the table of MODEL's keys, then [`END`].
pub fn render_reference(markdown: &str) -> Result<String, String> {
    let schemas = [
        (ManifestDoc::schema_name().into_owned(), manifest_schema()),
        (ConfigDoc::schema_name().into_owned(), config_schema()),
    ];
    let mut out = String::with_capacity(markdown.len());
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push('\n');
        let Some(rest) = line.strip_prefix(BEGIN) else {
            continue;
        };
        let model = rest.split_whitespace().next().unwrap_or_default();
        let (root, object) = schemas
            .iter()
            .find_map(|(root_name, schema)| {
                let object = if model == root_name {
                    Some(schema.as_value())
                } else {
                    schema.get("definitions")?.get(model)
                };
                object.map(|object| (schema.as_value(), object))
            })
            .ok_or_else(|| format!("{REFERENCE}: no model named {model:?}"))?;
        out.push_str(&key_table(root, object));
        if !lines.any(|l| l == END) {
            return Err(format!(
                "{REFERENCE}: the section of {model} has no `{END}`"
            ));
        }
        out.push_str(END);
        out.push('\n');
    }
    Ok(out)
}

/// The generated-section marker for `model`, as docs/manifest.md must hold it.
pub fn section_marker(model: &str) -> String {
    format!("{BEGIN}{model} by `{REGENERATE}`: do not edit -->")
}

fn key_table(root: &Value, object: &Value) -> String {
    let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let properties = object.get("properties").and_then(Value::as_object);
    for (key, property) in properties.into_iter().flatten() {
        let default = if required.contains(&key.as_str()) {
            "required".to_owned()
        } else {
            match property.get("default") {
                Some(Value::String(s)) => format!("`{s}`"),
                Some(v @ (Value::Bool(_) | Value::Number(_))) => format!("`{v}`"),
                _ => "—".to_owned(),
            }
        };
        let meaning = property
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{key}` | {} | {default} | {} |\n",
            type_words(root, property),
            cell(meaning)
        ));
    }
    out
}

/// Markdown table cells are one line, and `|` ends them.
fn cell(text: &str) -> String {
    text.replace("\n\n", " ").replace('|', "\\|")
}

/// What a value must be, in words, for the reference: `absolute path`, `` `up` \| `down` ``.
fn type_words(root: &Value, schema: &Value) -> String {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let resolved = target
            .strip_prefix("#")
            .and_then(|pointer| root.pointer(pointer));
        return resolved.map_or_else(|| "?".to_owned(), |s| type_words(root, s));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return one_of(values.iter().map(literal));
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        let Some(options) = schema.get(combinator).and_then(Value::as_array) else {
            continue;
        };
        if options.iter().all(|o| o.get("const").is_some()) {
            return one_of(options.iter().filter_map(|o| o.get("const")).map(literal));
        }
        let words: Vec<String> = options.iter().map(|o| type_words(root, o)).collect();
        return words.join(" or ");
    }
    if schema.get("patternProperties").is_some() {
        return "mapping of id → resource".to_owned();
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // ["object", "null"]: null is an empty mapping, not worth a word.
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "any",
    };
    match ty {
        "string" => {
            let pattern = schema.get("pattern").and_then(Value::as_str);
            match pattern {
                Some(NAME_PATTERN) => "name".to_owned(),
                Some(ABSOLUTE_PATH_PATTERN) => "absolute path".to_owned(),
                Some(DURATION_PATTERN) => "duration".to_owned(),
                Some(OPTIONS_PATTERN) => "string without spaces".to_owned(),
                Some(PROGRAM_PATTERN) => "program".to_owned(),
                Some(LISTEN_PATTERN) => "address:port".to_owned(),
                _ => "string".to_owned(),
            }
        }
        "boolean" => "bool".to_owned(),
        "integer" => match (schema.get("minimum"), schema.get("maximum")) {
            (Some(min), Some(max)) => format!("integer, {min} to {max}"),
            (Some(min), None) => format!("integer ≥ {min}"),
            _ => "integer".to_owned(),
        },
        "array" => match schema
            .get("items")
            .and_then(|items| items.get("pattern"))
            .and_then(Value::as_str)
        {
            Some(NAME_PATTERN) => "list of names".to_owned(),
            _ => "command: list of strings".to_owned(),
        },
        "object" => "mapping".to_owned(),
        other => other.to_owned(),
    }
}

fn literal(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

fn one_of(words: impl Iterator<Item = String>) -> String {
    words.collect::<Vec<_>>().join(" \\| ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository, which holds docs/ (this crate is crates/core in it).
    const REPOSITORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

    #[test]
    fn committed_files_are_what_the_model_generates() {
        let repo = Path::new(REPOSITORY);
        let regenerate = std::env::var_os("CONVERGE_REGENERATE").is_some();
        let mut stale = Vec::new();
        for (path, expected) in generated_files(repo).unwrap_or_else(|e| panic!("{e}")) {
            let committed = fs::read_to_string(repo.join(path)).unwrap_or_default();
            if committed == expected {
                continue;
            }
            if regenerate {
                fs::write(repo.join(path), expected)
                    .unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
            } else {
                stale.push(path);
            }
        }
        assert!(
            stale.is_empty(),
            "{} not what the model generates: regenerate with `{REGENERATE}`, then commit",
            stale.join(", ")
        );
    }

    #[test]
    fn every_model_has_its_section_in_the_reference() {
        let repo = Path::new(REPOSITORY);
        let reference = fs::read_to_string(repo.join(REFERENCE)).expect("docs/manifest.md");
        let mut all = models(&ManifestDoc::schema_name(), &manifest_schema());
        all.extend(models(&ConfigDoc::schema_name(), &config_schema()));
        let missing: Vec<String> = all
            .keys()
            .map(|model| section_marker(model))
            .filter(|marker| !reference.lines().any(|l| l == marker))
            .collect();
        assert!(
            missing.is_empty(),
            "{REFERENCE} lacks these lines, each followed by `{END}` where the table goes:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn a_section_naming_no_model_is_an_error() {
        let text = format!("{}\n{END}\n", section_marker("NoSuchDoc"));
        assert_eq!(
            render_reference(&text),
            Err(format!("{REFERENCE}: no model named \"NoSuchDoc\""))
        );
        let text = format!("{}\nno end\n", section_marker("FsDoc"));
        assert!(render_reference(&text).is_err());
    }
}
