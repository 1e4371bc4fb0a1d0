//! Reading delimited text (CSV, TSV, ...) and ARFF files into a `Table` of text cells. Quoted fields may
//! hold delimiters, doubled quotes and newlines (RFC 4180); `.gz` files are decompressed. A row with the
//! wrong number of fields is an error naming its line.

use super::table::{Column, Table};
use kiln_core::{Error, Result};
use std::io::Read;
use std::path::Path;

/// How to read a file.
#[derive(Clone, Debug)]
pub struct CsvOptions {
    /// The field separator; None: the most frequent of , ; tab | in the header line.
    pub delimiter: Option<char>,
    /// Cells that mean "missing" (compared after trimming spaces). The empty cell always does.
    pub missing: Vec<String>,
    /// The file's text encoding (a WHATWG label: `utf-8`, `windows-1252`, `latin1`, `iso-8859-15`,
    /// `shift_jis`...); None: UTF-8, or Windows-1252 with a warning when the bytes are not UTF-8.
    pub encoding: Option<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: None,
            missing: vec!["?".into(), "NA".into(), "N/A".into(), "NaN".into(), "null".into()],
            encoding: None,
        }
    }
}

/// The file's text, decompressed when it ends in .gz; invalid UTF-8 is an error naming the byte offset.
pub fn read_text(path: &Path) -> Result<String> {
    read_text_as(path, None)
}

/// The text of a file (gunzipped when .gz) in `encoding` (a WHATWG label), or else UTF-8 (a byte-order
/// mark says UTF-8 or UTF-16 and wins). Bytes that are not UTF-8, with no encoding given, are read as
/// Windows-1252 (what spreadsheets export in western Europe and the Americas; Latin-1's printable characters
/// and more), with a warning on stderr that says so and how to choose another.
pub fn read_text_as(path: &Path, encoding: Option<&str>) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("not a readable gzip file ({e})")))?;
        out
    } else {
        bytes
    };
    let given = match encoding {
        Some(label) => Some(encoding_rs::Encoding::for_label(label.trim().as_bytes()).ok_or_else(|| {
            Error::Config(format!(
                "data.encoding: `{label}` is not an encoding kiln knows (e.g. utf-8, windows-1252, latin1, \
                 iso-8859-15, shift_jis, gbk)"
            ))
        })?),
        None => None,
    };
    // UTF-16 without a byte-order mark is valid UTF-8 (a NUL beside each ASCII byte), so it is found by its
    // NULs: said, and decoded as UTF-16.
    // Each warning once per file in a process (a run reads its table more than once, by relative and by
    // absolute path).
    static WARNED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    let first_time = || {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        let first = !warned.contains(&key);
        if first {
            warned.push(key);
        }
        first
    };
    let given = match (given, utf16_without_bom(&bytes)) {
        (None, Some(enc)) if !first_time() => Some(enc),
        (None, Some(enc)) => {
            eprintln!(
                "warning: {}: no byte-order mark, but read as {} (NUL bytes between the characters)",
                path.display(),
                enc.name()
            );
            Some(enc)
        }
        (given, _) => given,
    };
    // UTF-8, given or assumed, is validated once and kept without a copy (a byte-order mark dropped).
    let bytes = if given.is_none_or(|e| e == encoding_rs::UTF_8) {
        match String::from_utf8(bytes) {
            Ok(mut text) => {
                if text.starts_with('\u{feff}') {
                    text.drain(..'\u{feff}'.len_utf8());
                }
                return Ok(text);
            }
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                if given.is_some() {
                    return Err(Error::format(
                        path,
                        format!("not valid UTF-8 (line {line}, byte {at}); set data.encoding to the file's encoding"),
                    ));
                }
                let utf16 = bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]);
                if !utf16 && first_time() {
                    eprintln!(
                        "warning: {}: not UTF-8 (line {line}); read as Windows-1252 (Latin-1); set data.encoding \
                         if it is another",
                        path.display()
                    );
                }
                bytes
            }
        }
    } else {
        bytes
    };
    // Not UTF-8 and no encoding given: Windows-1252 (a UTF-16 byte-order mark still wins in `decode`).
    let enc = given.unwrap_or(encoding_rs::WINDOWS_1252);
    let (text, used, bad) = enc.decode(&bytes);
    if bad {
        return Err(Error::format(
            path,
            format!("not valid {} text; set data.encoding to the file's encoding", used.name()),
        ));
    }
    // A wrong encoding can decode without an error into one long line (UTF-16 read from a UTF-8 file).
    if bytes.contains(&b'\n') && !text.contains('\n') {
        return Err(Error::format(
            path,
            format!(
                "read as {} the file has no line breaks, but its bytes have: set data.encoding to the file's \
                 encoding (or leave it out for UTF-8)",
                used.name()
            ),
        ));
    }
    Ok(text.into_owned())
}

/// UTF-16LE or BE by its NULs, for a file without a byte-order mark: in the first 4 KiB (16 bytes at
/// least), half or more of the bytes at odd (LE) or even (BE) offsets are 0 and almost none at the others,
/// as in text that is mostly ASCII.
fn utf16_without_bom(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = &bytes[..bytes.len().min(4096) & !1];
    // With a byte-order mark, `decode` knows the encoding and nothing needs saying.
    if head.len() < 16 || head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return None;
    }
    let zeros = |start: usize| head.iter().skip(start).step_by(2).filter(|&&b| b == 0).count();
    let (even, odd, half) = (zeros(0), zeros(1), head.len() / 2);
    if odd * 2 >= half && even * 20 < half {
        Some(encoding_rs::UTF_16LE)
    } else if even * 2 >= half && odd * 20 < half {
        Some(encoding_rs::UTF_16BE)
    } else {
        None
    }
}

/// A table from a CSV file; an ARFF file (.arff); a JSON-lines file (.jsonl, .ndjson: one object per line);
/// or a folder with one subfolder of .txt files per class (the aclImdb layout: `train/pos/*.txt`), which
/// gives the columns `text` and `label`. Any of the files may be gzip-compressed (.gz).
pub fn read_table(path: &Path, opts: &CsvOptions) -> Result<Table> {
    if path.is_dir() {
        return read_class_folders(path);
    }
    let text = read_text_as(path, opts.encoding.as_deref())?;
    let name = path.to_string_lossy();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".arff") {
        return parse_arff(&text, path, opts);
    }
    if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        return parse_jsonl(&text, path, opts);
    }
    parse_csv(&text, path, opts)
}

/// One JSON object per line; columns in the order keys first appear; numbers and booleans as text; null
/// and absent keys missing.
pub fn parse_jsonl(text: &str, path: &Path, opts: &CsvOptions) -> Result<Table> {
    let mut cols: Vec<Column> = Vec::new();
    let mut rows = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::format(path, format!("line {}: not a JSON object ({e})", i + 1)))?;
        let obj = v.as_object().ok_or_else(|| Error::format(path, format!("line {}: not a JSON object", i + 1)))?;
        for (k, val) in obj {
            let cell = match val {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => cell(s.clone(), &opts.missing),
                other => Some(other.to_string()),
            };
            let c = match cols.iter().position(|c| &c.name == k) {
                Some(c) => c,
                None => {
                    cols.push(Column { name: k.clone(), cells: vec![None; rows], declared: None });
                    cols.len() - 1
                }
            };
            cols[c].cells.push(cell);
        }
        rows += 1;
        for c in cols.iter_mut().filter(|c| c.cells.len() < rows) {
            c.cells.push(None);
        }
    }
    if rows == 0 {
        return Err(Error::format(path, "empty file: no JSON lines"));
    }
    Ok(Table { source: path.display().to_string(), columns: cols })
}

/// `dir/CLASS/*.txt` → rows (text, label), classes and files in name order.
fn read_class_folders(dir: &Path) -> Result<Table> {
    let mut classes: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, &e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let (mut text, mut label) = (Vec::new(), Vec::new());
    for class in &classes {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(class)
            .map_err(|e| Error::io(class, &e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        let name = class.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for f in files {
            let t = read_text(&f)?;
            text.push((!t.trim().is_empty()).then_some(t));
            label.push(Some(name.clone()));
        }
    }
    if text.is_empty() {
        return Err(Error::format(dir, "no CLASS/*.txt files in this folder (expected one subfolder per class)"));
    }
    let col = |name: &str, cells| Column { name: name.into(), cells, declared: Some(super::table::ColumnType::Text) };
    let mut label_col = col("label", label);
    label_col.declared = Some(super::table::ColumnType::Category);
    Ok(Table { source: dir.display().to_string(), columns: vec![col("text", text), label_col] })
}

pub fn parse_csv(text: &str, path: &Path, opts: &CsvOptions) -> Result<Table> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let delim = opts.delimiter.unwrap_or_else(|| {
        let head = text.lines().next().unwrap_or("");
        [',', ';', '\t', '|'].into_iter().max_by_key(|d| head.matches(*d).count()).unwrap_or(',')
    });
    let records = split_records(text, delim, '"', path)?;
    let mut it = records.into_iter();
    let Some((_, header)) = it.next() else {
        return Err(Error::format(path, "empty file: no header row"));
    };
    let header: Vec<String> = header.into_iter().map(|h| h.trim().to_string()).collect();
    if let Some(dup) = header.iter().enumerate().find(|(i, h)| header[..*i].contains(h)) {
        return Err(Error::format(path, format!("column `{}` appears twice in the header", dup.1)));
    }
    let mut cols: Vec<Column> =
        header.iter().map(|h| Column { name: h.clone(), cells: Vec::new(), declared: None }).collect();
    for (line, rec) in it {
        if rec.len() != cols.len() {
            return Err(Error::format(
                path,
                format!("line {line} has {} fields, the header has {}", rec.len(), cols.len()),
            ));
        }
        for (c, v) in cols.iter_mut().zip(rec) {
            c.cells.push(cell(v, &opts.missing));
        }
    }
    Ok(Table { source: path.display().to_string(), columns: cols })
}

fn cell(v: String, missing: &[String]) -> Option<String> {
    let t = v.trim();
    if t.is_empty() || missing.iter().any(|m| m == t) { None } else { Some(t.to_string()) }
}

/// Records with the line each starts on; quotes may wrap fields holding delimiters or newlines.
fn split_records(text: &str, delim: char, quote: char, path: &Path) -> Result<Vec<(usize, Vec<String>)>> {
    let mut out = Vec::new();
    let (mut rec, mut field) = (Vec::new(), String::new());
    let (mut line, mut start_line) = (1, 1);
    let mut in_quotes = false;
    let mut at_field_start = true;
    // Whether this record has a quoted field: `""` alone on a line is a row with one empty cell, a blank
    // line is no row.
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == quote {
                if chars.peek() == Some(&quote) {
                    field.push(quote);
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            continue;
        }
        match c {
            c if c == quote && at_field_start => {
                in_quotes = true;
                quoted = true;
                at_field_start = false;
            }
            c if c == delim => {
                rec.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' => {}
            '\n' => {
                if rec.is_empty() && field.trim().is_empty() && !quoted {
                    field.clear();
                } else {
                    rec.push(std::mem::take(&mut field));
                    out.push((start_line, std::mem::take(&mut rec)));
                }
                quoted = false;
                line += 1;
                start_line = line;
                at_field_start = true;
            }
            c => {
                if !(at_field_start && c == ' ') {
                    at_field_start = false;
                }
                field.push(c);
            }
        }
    }
    if in_quotes {
        return Err(Error::format(path, format!("a quoted field opened on line {start_line} never closes")));
    }
    if !field.trim().is_empty() || !rec.is_empty() || quoted {
        rec.push(field);
        out.push((start_line, rec));
    }
    Ok(out)
}

/// ARFF (Weka): `@attribute name numeric|{a,b,...}|string` lines, then `@data` rows with ' or " quotes.
fn parse_arff(text: &str, path: &Path, opts: &CsvOptions) -> Result<Table> {
    let mut cols: Vec<Column> = Vec::new();
    // Each attribute's declared values, for the nominal ones.
    let mut nominal: Vec<Option<Vec<String>>> = Vec::new();
    let mut data_at = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('%') {
            continue;
        }
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("@attribute") {
            let rest = l["@attribute".len()..].trim();
            let (name, kind) = if let Some(r) = rest.strip_prefix('\'') {
                let end = r.find('\'').ok_or_else(|| Error::format(path, format!("line {}: unclosed quote", i + 1)))?;
                (r[..end].to_string(), r[end + 1..].trim())
            } else {
                let mut p = rest.splitn(2, char::is_whitespace);
                (p.next().unwrap_or("").to_string(), p.next().unwrap_or("").trim())
            };
            let declared = if let Some(set) = kind.strip_prefix('{') {
                let Some(set) = set.trim_end().strip_suffix('}') else {
                    return Err(Error::format(path, format!("line {}: attribute `{name}`: `{{` never closes", i + 1)));
                };
                let values = split_records(&set.replace('\'', "\""), ',', '"', path)?.into_iter().next();
                let values = values.map(|(_, r)| r.into_iter().filter_map(|v| cell(v, &[])).collect());
                nominal.push(Some(values.unwrap_or_default()));
                super::table::ColumnType::Category
            } else {
                nominal.push(None);
                // `date` may be followed by its format.
                match kind.split_whitespace().next().unwrap_or("").to_ascii_lowercase().as_str() {
                    "numeric" | "real" | "integer" => super::table::ColumnType::Number,
                    // Dates are kept as their text: kiln reads no date type.
                    "string" | "date" => super::table::ColumnType::Text,
                    _ => {
                        let given = if kind.is_empty() { "no type".to_string() } else { format!("type `{kind}`") };
                        return Err(Error::format(
                            path,
                            format!(
                                "line {}: attribute `{name}` has {given}; ARFF's are numeric, real, integer, string, \
                                 date or {{value,...}} (relational attributes are not read)",
                                i + 1
                            ),
                        ));
                    }
                }
            };
            cols.push(Column { name, cells: Vec::new(), declared: Some(declared) });
        } else if lower.starts_with("@data") {
            data_at = Some(i + 1);
            break;
        }
    }
    let Some(start) = data_at else {
        return Err(Error::format(path, "no @data section (not an ARFF file?)"));
    };
    if cols.is_empty() {
        return Err(Error::format(path, "no @attribute lines"));
    }
    let body: String = text.lines().skip(start).collect::<Vec<_>>().join("\n");
    let mut missing = opts.missing.clone();
    missing.push("?".into());
    for (line, rec) in split_records(&body.replace('\'', "\""), ',', '"', path)? {
        if rec.len() == 1 && (rec[0].trim().is_empty() || rec[0].trim_start().starts_with('%')) {
            continue;
        }
        if rec.len() != cols.len() {
            return Err(Error::format(
                path,
                format!("line {} has {} fields, there are {} attributes", line + start, rec.len(), cols.len()),
            ));
        }
        for ((c, v), set) in cols.iter_mut().zip(rec).zip(&nominal) {
            let v = cell(v, &missing);
            if let (Some(v), Some(set)) = (&v, set)
                && !set.contains(v)
            {
                let shown: Vec<&str> = set.iter().take(10).map(String::as_str).collect();
                let more = if set.len() > 10 { ",..." } else { "" };
                return Err(Error::format(
                    path,
                    format!(
                        "line {}: `{v}` is not a value of attribute `{}` {{{}{more}}}",
                        line + start,
                        c.name,
                        shown.join(",")
                    ),
                ));
            }
            c.cells.push(v);
        }
    }
    Ok(Table { source: path.display().to_string(), columns: cols })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::table::ColumnType;

    #[test]
    fn quoted_fields_newlines_missing_and_ragged_rows() {
        let p = Path::new("t.csv");
        let t = parse_csv("a,b,c\n1,\"x, \"\"y\"\"\n z\",?\n2,,NA\n", p, &CsvOptions::default()).unwrap();
        assert_eq!(t.columns[1].cells, vec![Some("x, \"y\"\n z".to_string()), None]);
        assert_eq!(t.columns[2].cells, vec![None, None]);
        let e = parse_csv("a,b\n1,2\n3\n", p, &CsvOptions::default()).unwrap_err().to_string();
        assert_eq!(e, "t.csv: line 3 has 1 fields, the header has 2");
        let t = parse_csv("a;b\n1;2\n", p, &CsvOptions::default()).unwrap();
        assert_eq!(t.columns[1].cells, vec![Some("2".to_string())]);
        assert!(parse_csv("", p, &CsvOptions::default()).unwrap_err().to_string().contains("empty file"));
        assert!(parse_csv("a\n\"open\n", p, &CsvOptions::default()).unwrap_err().to_string().contains("never closes"));
    }

    #[test]
    fn json_lines_and_class_folders() {
        let t = parse_jsonl(
            "{\"text\": \"ok\", \"y\": 1}\n\n{\"y\": 0, \"extra\": null}\n",
            Path::new("t.jsonl"),
            &CsvOptions::default(),
        )
        .unwrap();
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["text", "y", "extra"]);
        assert_eq!(t.columns[0].cells, vec![Some("ok".to_string()), None]);
        assert_eq!(t.columns[1].cells, vec![Some("1".to_string()), Some("0".to_string())]);
        assert!(
            parse_jsonl("[1]\n", Path::new("t.jsonl"), &CsvOptions::default())
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for (class, i, text) in [("pos", 0, "great film"), ("pos", 1, "loved it"), ("neg", 0, "dull")] {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            std::fs::write(dir.join(class).join(format!("{i}_7.txt")), text).unwrap();
        }
        let t = read_table(dir, &CsvOptions::default()).unwrap();
        assert_eq!(t.columns[0].cells, vec![Some("dull".into()), Some("great film".into()), Some("loved it".into())]);
        assert_eq!(t.columns[1].cells, vec![Some("neg".into()), Some("pos".into()), Some("pos".into())]);
    }

    #[test]
    fn arff_attributes_and_quoted_values() {
        let text = "% c\n@relation r\n@attribute 'a b' {'<0',x}\n@attribute n numeric\n@data\n'<0',3\nx,?\n";
        let t = parse_arff(text, Path::new("t.arff"), &CsvOptions::default()).unwrap();
        assert_eq!(t.columns[0].name, "a b");
        assert_eq!(t.columns[0].cells, vec![Some("<0".to_string()), Some("x".to_string())]);
        assert_eq!(t.columns[1].cells, vec![Some("3".to_string()), None]);
        let text = "@attribute s string\n@attribute d date 'yyyy-MM-dd'\n@attribute c {p, 'q r'}\n@data\nab,'2020-01-02','q r'\n";
        let t = parse_arff(text, Path::new("t.arff"), &CsvOptions::default()).unwrap();
        let types: Vec<_> = t.columns.iter().map(|c| c.declared.unwrap()).collect();
        assert_eq!(types, [ColumnType::Text, ColumnType::Text, ColumnType::Category]);
        assert_eq!(t.columns[2].cells, vec![Some("q r".to_string())]);
        let err = |text: &str| parse_arff(text, Path::new("t.arff"), &CsvOptions::default()).unwrap_err().to_string();
        assert_eq!(
            err("@attribute n numerc\n@data\n1\n"),
            "t.arff: line 1: attribute `n` has type `numerc`; ARFF's are numeric, real, integer, string, date or \
             {value,...} (relational attributes are not read)"
        );
        assert!(err("@attribute n\n@data\n1\n").contains("attribute `n` has no type"));
        assert!(err("@attribute c {a,b\n@data\na\n").contains("line 1: attribute `c`: `{` never closes"));
        assert_eq!(
            err("@attribute c {a,b}\n@data\na\nb\nc\n"),
            "t.arff: line 5: `c` is not a value of attribute `c` {a,b}"
        );
    }
}
