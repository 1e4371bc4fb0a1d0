//! How a config is read and changed: TOML text to a config type with one-line errors (the line, the key, the
//! nearest valid key), `--set KEY=VALUE` applied to any config, and `kiln search`'s `KEY=V1,V2` axes.

use kiln_core::{Error, Result};
use serde::Serialize;

/// Any config type from TOML text, with errors as `explain_toml_error` words them: every config reader of
/// kiln (runs, tables) goes through here, so every TOML mistake reads the same.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    toml::from_str(text).map_err(|e| explain_toml_error(&e, text))
}

/// `cfg` with the dotted `key` set to `value`; an unknown key or a value of the wrong kind is an error naming
/// the key (and the nearest valid one).
pub fn with_setting<T: Serialize + serde::de::DeserializeOwned>(cfg: &T, key: &str, value: &toml::Value) -> Result<T> {
    let mut doc = toml::Value::try_from(cfg).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut at = &mut doc;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let table = at.as_table_mut().ok_or_else(|| Error::Config(format!("`{key}`: `{p}` is not a table")))?;
        if i + 1 == parts.len() {
            table.insert(p.to_string(), value.clone());
            break;
        }
        at = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
    doc.try_into().map_err(|e: toml::de::Error| {
        let msg = e.message().to_string();
        Error::Config(format!("`{key} = {value}`: {}", explain_unknown(&msg).unwrap_or(msg)))
    })
}

/// One setting a search varies: a dotted config key (`model.hidden`, `train.optimizer.learning_rate`) and the values
/// to try.
#[derive(Clone, Debug)]
pub struct Axis {
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// Parses `KEY=V1,V2,...` (values in TOML syntax; commas inside brackets belong to the value).
pub fn parse_axis(s: &str) -> Result<Axis> {
    let (key, vals) =
        s.split_once('=').ok_or_else(|| Error::Invalid(format!("`{s}`: expected KEY=VALUE,VALUE,...")))?;
    let (mut parts, mut depth, mut cur) = (Vec::new(), 0i32, String::new());
    for c in vals.chars() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    let values = parts
        .iter()
        .map(|p| {
            let t: toml::Table = toml::from_str(&format!("v = {}", p.trim()))
                .or_else(|_| toml::from_str(&format!("v = \"{}\"", p.trim())))
                .map_err(|e| Error::Invalid(format!("`{p}` is not a value for {key} ({})", e.message())))?;
            Ok(t["v"].clone())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Axis { key: key.trim().to_string(), values })
}

/// `cfg` with each `KEY=VALUE` of `sets` applied in turn (`--set`); a list of values is for `kiln search`.
pub fn with_settings<T: Serialize + serde::de::DeserializeOwned>(cfg: T, sets: &[String]) -> Result<T> {
    let mut cfg = cfg;
    for s in sets {
        let axis = parse_axis(s)?;
        let [value] = axis.values.as_slice() else {
            return Err(Error::Invalid(format!("--set {s}: one value (a list of settings is for `kiln search`)")));
        };
        cfg = with_setting(&cfg, &axis.key, value)?;
    }
    Ok(cfg)
}

/// "line 12: unknown key `epohcs`; did you mean `epochs`?": the line from the error's span, the message with
/// serde's list of expected keys turned into the nearest one.
pub fn explain_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().replace('\n', " ");
    // Inside `[[model.layers]]` the span covers the whole array of tables: point at the key or value named.
    let start = e.span().map(|s| {
        let at = within(text, s.start);
        named_in_table(text, at, s.end, &msg).unwrap_or(at)
    });
    let line = start.map(|at| text[..at].matches('\n').count() + 1);
    let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
    if let (Some(l), Some(plain)) = (line, explain_type(&msg)) {
        if let Some((l, key)) = key_on_line(text, l, &msg) {
            return format!("line {l}: {key}: {plain}");
        }
        return format!("{at}{plain}");
    }
    let explained = explain_unknown(&msg).unwrap_or(msg);
    format!("{at}{explained}")
}

/// serde's "invalid type: string \"x\", expected usize" in a user's words: "expected a whole number (0 or
/// more), not the string \"x\"".
fn explain_type(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("invalid type: ").or_else(|| msg.strip_prefix("invalid value: "))?;
    let (got, expected) = rest.rsplit_once(", expected ")?;
    let want = match expected.trim() {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number (0 or more), e.g. 10",
        "i64" | "i32" => "a whole number",
        "f32" | "f64" => "a number, e.g. 0.001",
        "a boolean" => "true or false",
        "a sequence" => "a list in brackets, e.g. [\"a\", \"b\"]",
        "a string" | "path string" => "text in quotes",
        "a map" => "a table, e.g. { key = 1 }",
        other => other,
    };
    let got = got.replace('`', "");
    Some(format!("expected {want}, not {got}"))
}

/// The line and dotted key written on line `line` of `text` (its `[section]` in front), or the key inside an inline
/// table on that line whose value the message quotes (`optimizer = { learning_rate = "x" }` →
/// `train.optimizer.learning_rate`).
fn key_on_line(text: &str, line: usize, msg: &str) -> Option<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    // The value the message quotes ("string \"x\"", "integer `-1`").
    let quoted = msg.split_once(": ").map(|(_, r)| r).and_then(|r| r.split_once(", expected")).map(|(g, _)| g);
    let token = quoted.and_then(|g| g.split_once(' ')).map(|(_, t)| t.trim_matches('`').to_string());
    let mut line = line;
    if lines.get(line - 1)?.trim_start().starts_with('[') {
        // An array of tables (`[[model.layers]]`): toml points at its header; find the key whose value the
        // message quotes in the tables after it.
        let token = token.as_deref()?;
        let found = lines[line..].iter().position(|l| {
            l.split_once('=')
                .is_some_and(|(_, v)| v.trim() == token || v.trim().trim_matches('"') == token.trim_matches('"'))
        })?;
        line += found + 1;
    }
    let here = lines.get(line - 1)?.trim();
    let (key, value) = here.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let section = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let mut full = match section {
        Some(s) if !s.is_empty() => format!("{s}.{key}"),
        _ => key.to_string(),
    };
    // Inside an inline table: the inner `name =` before the quoted value.
    if let Some(token) = token
        && value.trim_start().starts_with('{')
        && let Some(pos) = value.find(&token)
    {
        let before = value[..pos].trim_end().strip_suffix('=')?;
        let inner: String = before
            .chars()
            .rev()
            .skip_while(|c| c.is_whitespace())
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let inner: String = inner.chars().rev().collect();
        if !inner.is_empty() {
            full = format!("{full}.{inner}");
        }
    }
    Some((line, full))
}

/// The nearest char boundary at or before `at`.
fn within(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Where the key (`x = ...`) or value (`"x"`) that an "unknown field `x`" or "unknown variant `x`" message
/// names is written, in the array of tables whose first header is at `from`..`to` (the span toml gives). Of the tables
/// there that hold it, the one whose other keys are all in the message's list of valid keys (the table that
/// failed, not an earlier one of another type where the key is valid).
fn named_in_table(text: &str, from: usize, to: usize, msg: &str) -> Option<usize> {
    let (is_key, rest) = match (msg.strip_prefix("unknown field `"), msg.strip_prefix("unknown variant `")) {
        (Some(r), _) => (true, r),
        (_, Some(r)) => (false, r),
        _ => return None,
    };
    let (name, after) = rest.split_once('`')?;
    let valid: Vec<&str> = after.split('`').skip(1).step_by(2).collect();
    let key_of = |t: &str| t.split_once('=').map(|(k, _)| k.trim().to_string());
    // The span is the array's first header (`[[model.layers]]`): its tables run until another header.
    let header = text[from..within(text, to.max(from))].trim();
    let mut offset = from;
    let mut table: Vec<(usize, &str)> = Vec::new();
    let mut tables: Vec<Vec<(usize, &str)>> = Vec::new();
    for line in text[from..].split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') && !table.is_empty() {
            if t.trim_end() != header {
                break;
            }
            tables.push(std::mem::take(&mut table));
        }
        table.push((offset + (line.len() - t.len()), t));
        offset += line.len();
    }
    tables.push(table);
    for t in &tables {
        let hit = t.iter().find(|(_, l)| {
            if is_key {
                l.strip_prefix(name).is_some_and(|r| r.trim_start().starts_with('='))
            } else {
                l.contains(&format!("\"{name}\"")) || l.contains(&format!("'{name}'"))
            }
        });
        let fits = !is_key
            || t.iter()
                .filter_map(|(_, l)| key_of(l))
                .all(|k| k == name || k == "type" || k == "inputs" || valid.contains(&k.as_str()));
        if let (Some(&(at, _)), true) = (hit, fits) {
            return Some(at);
        }
    }
    None
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant") with a suggestion.
pub fn explain_unknown(msg: &str) -> Option<String> {
    let (what, rest) = if let Some(r) = msg.strip_prefix("unknown field `") {
        ("key", r)
    } else if let Some(r) = msg.strip_prefix("unknown variant `") {
        ("value", r)
    } else {
        return None;
    };
    let (given, rest) = rest.split_once('`')?;
    let valid: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    if valid.is_empty() {
        return Some(format!("unknown {what} `{given}`: {}", rest.trim_start_matches([',', ' '])));
    }
    // Keys that moved: one spelling for a setting in every config.
    let moved = match given {
        "learning_rate" | "weight_decay" if valid.contains(&"optimizer") => Some(
            "; it is set with the optimizer: optimizer = { type = \"adam\", learning_rate = 0.001 }, or \
             { type = \"adamw\", learning_rate = 0.001, weight_decay = 0.004 }",
        ),
        "regression_loss" if valid.contains(&"loss") => Some("; write loss = \"huber\" (or mean_absolute_error)"),
        // What other tools call the data's file (the nearest by edits had been `item`).
        "file" | "filename" | "file_path" | "data_path" | "csv" if valid.contains(&"path") => {
            Some("; did you mean `path`? (the data's file or folder: path = \"data/train.csv\")")
        }
        _ => None,
    };
    if let Some(m) = moved {
        return Some(format!("unknown {what} `{given}`{m}"));
    }
    // `inputs` is a key of graph nodes only (it sits beside the layer's own keys).
    if what == "key" && !valid.contains(&"inputs") && edit_distance(given, "inputs") <= 2 {
        let hint = if given == "inputs" { "" } else { "did you mean `inputs`? " };
        return Some(format!(
            "unknown key `{given}`; {hint}`inputs` names what a layer reads in [[model.nodes]] (a graph); in \
             [[model.layers]] each layer reads the one before"
        ));
    }
    // A value that begins a valid one (`glorot` for `glorot_uniform`) is a shortened spelling of it: named
    // first, where the nearest by edits had been `zeros`.
    let prefixed: Vec<&&str> = valid.iter().filter(|v| given.len() >= 3 && v.starts_with(given)).collect();
    if !prefixed.is_empty() {
        let named: Vec<String> = prefixed.iter().map(|v| format!("`{v}`")).collect();
        let named = named.join(" or ");
        return Some(format!("unknown {what} `{given}`; did you mean {named}? (valid: {})", valid.join(", ")));
    }
    let best = valid.iter().min_by_key(|v| edit_distance(given, v)).expect("non-empty");
    let hint = if edit_distance(given, best) <= given.len().max(best.len()) / 2 + 1 {
        format!("; did you mean `{best}`?")
    } else {
        String::new()
    };
    Some(format!("unknown {what} `{given}`{hint} (valid: {})", valid.join(", ")))
}

pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + (a[i - 1] != b[j - 1]) as usize;
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
