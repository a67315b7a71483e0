//! The `tojson` filter as Hugging Face transformers defines it for chat templates: Python's
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, so that
//! tool schemas render byte for byte as in Python (", " and ": " separators, no HTML escaping,
//! Python's float repr).

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

use super::pyrepr::float_repr;

/// How to write JSON, as `json.dumps`'s keyword arguments say.
struct Style {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// `value | tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
pub(super) fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let style = style(&kwargs)?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_value(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

fn style(kwargs: &Kwargs) -> Result<Style, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(indent_string(&v)?),
    };
    // Python's defaults: no space before a newline when indenting.
    let default_item = if indent.is_some() { "," } else { ", " };
    let (item_sep, key_sep) = match kwargs.get::<Option<Value>>("separators")? {
        Some(v) if !v.is_none() => separators(&v)?,
        _ => (default_item.to_string(), ": ".to_string()),
    };
    Ok(Style {
        indent,
        item_sep,
        key_sep,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    })
}

/// An integer indents by that many spaces (none if negative), a string by itself.
fn indent_string(v: &Value) -> Result<String, Error> {
    if let Some(s) = v.as_str() {
        return Ok(s.to_string());
    }
    let n = v
        .as_i64()
        .ok_or_else(|| invalid("tojson: indent must be an integer or a string"))?;
    Ok(" ".repeat(usize::try_from(n).unwrap_or(0)))
}

fn separators(v: &Value) -> Result<(String, String), Error> {
    let parts: Vec<Value> = v.try_iter()?.collect();
    match parts.as_slice() {
        [item, key] => match (item.as_str(), key.as_str()) {
            (Some(item), Some(key)) => Ok((item.to_string(), key.to_string())),
            _ => Err(invalid("tojson: separators must be two strings")),
        },
        _ => Err(invalid("tojson: separators must be two strings")),
    }
}

fn write_value(out: &mut String, v: &Value, style: &Style, level: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&number(v)?),
        ValueKind::String => write_string(out, v.as_str().unwrap_or_default(), style.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            write_list(out, &items, style, level)?;
        }
        ValueKind::Map => write_map(out, v, style, level)?,
        kind => {
            return Err(invalid(format!(
                "tojson: a value of kind {kind} is not JSON serializable"
            )))
        }
    }
    Ok(())
}

fn write_list(out: &mut String, items: &[Value], style: &Style, level: usize) -> Result<(), Error> {
    if items.is_empty() {
        out.push_str("[]");
        return Ok(());
    }
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        separate(out, i, style, level + 1);
        write_value(out, item, style, level + 1)?;
    }
    close(out, style, level);
    out.push(']');
    Ok(())
}

fn write_map(out: &mut String, map: &Value, style: &Style, level: usize) -> Result<(), Error> {
    let mut entries = Vec::new();
    for key in map.try_iter()? {
        let value = map.get_item(&key)?;
        entries.push((key_string(&key)?, value));
    }
    if entries.is_empty() {
        out.push_str("{}");
        return Ok(());
    }
    if style.sort_keys {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
    }
    out.push('{');
    for (i, (key, value)) in entries.iter().enumerate() {
        separate(out, i, style, level + 1);
        write_string(out, key, style.ensure_ascii);
        out.push_str(&style.key_sep);
        write_value(out, value, style, level + 1)?;
    }
    close(out, style, level);
    out.push('}');
    Ok(())
}

/// Before item `i`: the item separator (not before the first), then a newline and indent.
fn separate(out: &mut String, i: usize, style: &Style, level: usize) {
    if i > 0 {
        out.push_str(&style.item_sep);
    }
    if let Some(indent) = &style.indent {
        out.push('\n');
        out.push_str(&indent.repeat(level));
    }
}

fn close(out: &mut String, style: &Style, level: usize) {
    if let Some(indent) = &style.indent {
        out.push('\n');
        out.push_str(&indent.repeat(level));
    }
}

/// Python turns number, bool and None keys into strings; anything else is a TypeError.
fn key_string(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => number(key),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        kind => Err(invalid(format!(
            "tojson: keys must be strings, numbers, bools or none, not {kind}"
        ))),
    }
}

fn number(v: &Value) -> Result<String, Error> {
    if v.is_integer() {
        return Ok(v.to_string());
    }
    // json.dumps writes non-finite floats as JavaScript literals, finite ones as repr().
    let f = f64::try_from(v.clone())?;
    Ok(match float_repr(f).as_str() {
        "nan" => "NaN".to_string(),
        "inf" => "Infinity".to_string(),
        "-inf" => "-Infinity".to_string(),
        repr => repr.to_string(),
    })
}

/// JSON string escaping as Python does it: `"`, `\`, control characters; with `ensure_ascii`
/// every non-ASCII character as `\uXXXX` (UTF-16 surrogate pairs above the BMP).
fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

#[cfg(test)]
mod tests {
    use super::write_string;

    #[test]
    fn strings_escape_as_python_json() {
        let mut out = String::new();
        write_string(&mut out, "a\"\\\n\t\u{1}é🦀</x>", false);
        assert_eq!(out, "\"a\\\"\\\\\\n\\t\\u0001é🦀</x>\"");
        out.clear();
        write_string(&mut out, "é🦀", true);
        assert_eq!(out, "\"\\u00e9\\ud83e\\udd80\"");
    }
}
