//! JSON configuration files (`config.json`, `open_clip_config.json`, indexes, tokenizer settings): reading them
//! with the config size limit, and typed getters over one object of a config that name the field in every
//! error (`vision_config.hidden_size is "big", expected a non-negative integer`).

use std::cell::RefCell;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{one_line, ClipError, Result};

/// Parses a JSON file; a syntax error is a [`ClipError::Config`] naming the file, on one line.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = clip_io::read_input_text(path, clip_io::Input::Config)?;
    serde_json::from_str(&text).map_err(|e| ClipError::Config {
        path: path.to_path_buf(),
        reason: one_line(&format!("not valid JSON: {e}")),
    })
}

/// What an explicit `null` means in a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nulls {
    /// An error (transformers passes `None` on and fails when it builds the model).
    Error,
    /// The same as leaving the key out (open_clip's dataclasses take `None` as "off").
    Absent,
}

/// One object of a config, named for messages (`vision_config`), recording which keys were read.
pub(crate) struct Fields<'a> {
    name: &'a str,
    map: &'a Map<String, Value>,
    nulls: Nulls,
    used: RefCell<Vec<String>>,
}

impl<'a> Fields<'a> {
    pub fn new(name: &'a str, value: &'a Value, nulls: Nulls) -> std::result::Result<Self, String> {
        let map = value
            .as_object()
            .ok_or_else(|| format!("{name} is not a JSON object"))?;
        Ok(Self {
            name,
            map,
            nulls,
            used: RefCell::new(Vec::new()),
        })
    }

    /// The value of `key`, `None` when absent (then the format's default applies).
    pub fn get(&self, key: &str) -> std::result::Result<Option<&'a Value>, String> {
        self.used.borrow_mut().push(key.to_string());
        match (self.map.get(key), self.nulls) {
            (Some(Value::Null), Nulls::Error) => Err(format!(
                "{}.{key} is null; give a value or leave the key out for the default",
                self.name
            )),
            (Some(Value::Null), Nulls::Absent) | (None, _) => Ok(None),
            (Some(v), _) => Ok(Some(v)),
        }
    }

    /// The message for a value of the wrong kind.
    pub fn bad(&self, key: &str, what: &str, value: &Value) -> String {
        format!("{}.{key} is {value}, expected {what}", self.name)
    }

    /// A non-negative integer; `default` when absent (`None`: the key is required).
    pub fn usize(&self, key: &str, default: Option<usize>) -> std::result::Result<usize, String> {
        match self.get(key)? {
            Some(v) => as_usize(v).ok_or_else(|| self.bad(key, "a non-negative integer", v)),
            None => default.ok_or_else(|| format!("{}.{key} is missing", self.name)),
        }
    }

    pub fn f64(&self, key: &str, default: f64) -> std::result::Result<f64, String> {
        match self.get(key)? {
            Some(v) => v.as_f64().ok_or_else(|| self.bad(key, "a number", v)),
            None => Ok(default),
        }
    }

    /// An image or patch size: an integer, or `[height, width]` with equal sides.
    pub fn square(&self, key: &str, default: usize) -> std::result::Result<usize, String> {
        let Some(v) = self.get(key)? else {
            return Ok(default);
        };
        if let Some(n) = as_usize(v) {
            return Ok(n);
        }
        match v
            .as_array()
            .map(|a| a.iter().map(as_usize).collect::<Option<Vec<_>>>())
        {
            Some(Some(sides)) if sides.len() == 2 && sides[0] == sides[1] => Ok(sides[0]),
            _ => Err(self.bad(key, "an integer or [n, n] (square inputs only)", v)),
        }
    }

    /// The keys not read so far, with their values.
    pub fn unread(&self) -> Vec<(&'a str, &'a Value)> {
        let used = self.used.borrow();
        self.map
            .iter()
            .filter(|(k, _)| !used.iter().any(|u| u == *k))
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }

    pub fn name(&self) -> &str {
        self.name
    }
}

pub(crate) fn as_usize(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn getters_name_the_field_and_follow_the_null_rule() {
        let v = json!({"a": 3, "b": "x", "c": null, "d": [5, 5]});
        let strict = Fields::new("cfg", &v, Nulls::Error).unwrap();
        assert_eq!(strict.usize("a", None), Ok(3));
        assert_eq!(
            strict.usize("b", None).unwrap_err(),
            "cfg.b is \"x\", expected a non-negative integer"
        );
        assert!(strict
            .usize("c", Some(1))
            .unwrap_err()
            .contains("cfg.c is null"));
        assert_eq!(strict.usize("z", None).unwrap_err(), "cfg.z is missing");
        assert_eq!(strict.square("d", 1), Ok(5));
        let lenient = Fields::new("cfg", &v, Nulls::Absent).unwrap();
        assert_eq!(lenient.usize("c", Some(7)), Ok(7));
        assert_eq!(lenient.unread().len(), 3);
        assert!(Fields::new("cfg", &json!([1]), Nulls::Error).is_err());
    }
}
