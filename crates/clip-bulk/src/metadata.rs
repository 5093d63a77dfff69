//! `metadata_{i}.parquet` as clip-retrieval writes it with pandas: one row per embedding row, columns
//! `image_path`, `key`, `caption`, `url`, then every other field of the samples' `.json` in order of first
//! appearance (each object's fields sorted by name, as they are read). A field's column type is taken from its values in the partition: booleans, integers,
//! floats or strings; anything else (nested objects, mixed kinds) is stored as its JSON text. Missing values
//! are nulls.

use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde_json::{Map, Value};

/// One row's metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataRow {
    pub image_path: String,
    pub key: String,
    pub caption: Option<String>,
    /// The sample's `.json` fields (or a CSV row's other columns).
    pub fields: Map<String, Value>,
}

/// Fields that are columns of their own (a `.json`'s copy of them is not repeated).
const OWN_COLUMNS: [&str; 3] = ["image_path", "key", "caption"];

enum Column {
    Bool(Vec<Option<bool>>),
    Int(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

impl Column {
    /// The narrowest column type holding every value of `values`.
    fn infer(values: Vec<Option<&Value>>) -> Column {
        let present = || values.iter().flatten();
        if present().all(|v| v.is_boolean()) && present().next().is_some() {
            Column::Bool(values.iter().map(|v| v.and_then(Value::as_bool)).collect())
        } else if present().all(|v| v.is_i64()) && present().next().is_some() {
            Column::Int(values.iter().map(|v| v.and_then(Value::as_i64)).collect())
        } else if present().all(|v| v.is_number()) && present().next().is_some() {
            Column::Double(values.iter().map(|v| v.and_then(Value::as_f64)).collect())
        } else {
            Column::Text(
                values
                    .iter()
                    .map(|v| match v {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(other) => Some(other.to_string()),
                    })
                    .collect(),
            )
        }
    }

    fn schema(&self, name: &str) -> parquet::errors::Result<Type> {
        let (physical, logical) = match self {
            Column::Bool(_) => (Physical::BOOLEAN, None),
            Column::Int(_) => (Physical::INT64, None),
            Column::Double(_) => (Physical::DOUBLE, None),
            Column::Text(_) => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
        };
        Type::primitive_type_builder(name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .build()
    }
}

/// Values and definition levels (1 = present) of an optional column.
fn levels<T: Clone, U>(values: &[Option<T>], convert: impl Fn(T) -> U) -> (Vec<U>, Vec<i16>) {
    let defined = values.iter().map(|v| i16::from(v.is_some())).collect();
    (
        values.iter().flatten().cloned().map(convert).collect(),
        defined,
    )
}

/// The parquet file's bytes for `rows`.
pub fn write_parquet(rows: &[MetadataRow]) -> parquet::errors::Result<Vec<u8>> {
    let mut names: Vec<String> = vec!["image_path".into(), "key".into(), "caption".into()];
    let mut columns = vec![
        Column::Text(rows.iter().map(|r| Some(r.image_path.clone())).collect()),
        Column::Text(rows.iter().map(|r| Some(r.key.clone())).collect()),
        Column::Text(rows.iter().map(|r| r.caption.clone()).collect()),
    ];
    let mut fields: Vec<&str> = Vec::new();
    for row in rows {
        for name in row.fields.keys() {
            if !OWN_COLUMNS.contains(&name.as_str()) && !fields.contains(&name.as_str()) {
                fields.push(name);
            }
        }
    }
    // `url` first among the fields, as in clip-retrieval's outputs read by `clip back`.
    if let Some(at) = fields.iter().position(|f| *f == "url") {
        let url = fields.remove(at);
        fields.insert(0, url);
    }
    for field in fields {
        names.push(field.to_string());
        columns.push(Column::infer(
            rows.iter().map(|r| r.fields.get(field)).collect(),
        ));
    }
    let schema = Type::group_type_builder("schema")
        .with_fields(
            names
                .iter()
                .zip(&columns)
                .map(|(name, column)| column.schema(name).map(Arc::new))
                .collect::<parquet::errors::Result<Vec<_>>>()?,
        )
        .build()?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("clip-rs {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, Arc::new(schema), Arc::new(properties))?;
    let mut group = writer.next_row_group()?;
    let mut next = columns.iter();
    while let Some(mut column_writer) = group.next_column()? {
        let column = next.next().expect("one column writer per schema field");
        match column {
            Column::Bool(values) => {
                let (values, defined) = levels(values, |v| v);
                column_writer
                    .typed::<BoolType>()
                    .write_batch(&values, Some(&defined), None)?;
            }
            Column::Int(values) => {
                let (values, defined) = levels(values, |v| v);
                column_writer
                    .typed::<Int64Type>()
                    .write_batch(&values, Some(&defined), None)?;
            }
            Column::Double(values) => {
                let (values, defined) = levels(values, |v| v);
                column_writer
                    .typed::<DoubleType>()
                    .write_batch(&values, Some(&defined), None)?;
            }
            Column::Text(values) => {
                let (values, defined) = levels(values, |v| ByteArray::from(v.into_bytes()));
                column_writer.typed::<ByteArrayType>().write_batch(
                    &values,
                    Some(&defined),
                    None,
                )?;
            }
        }
        column_writer.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn columns_types_and_nulls_read_back() {
        let row = |key: &str, fields: Value| MetadataRow {
            image_path: key.into(),
            key: key.into(),
            caption: (key != "b").then(|| format!("caption {key}")),
            fields: fields.as_object().cloned().unwrap_or_default(),
        };
        let rows = [
            row(
                "a",
                serde_json::json!({"width": 3, "key": "ignored", "url": "http://x/a", "ok": true, "score": 1}),
            ),
            row(
                "b",
                serde_json::json!({"width": 5, "score": 0.5, "exif": {"k": 1}}),
            ),
        ];
        let bytes = write_parquet(&rows).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "image_path",
                "key",
                "caption",
                "url",
                "ok",
                "score",
                "width",
                "exif"
            ]
        );
        let types: Vec<Physical> = schema.columns().iter().map(|c| c.physical_type()).collect();
        assert_eq!(types[4], Physical::BOOLEAN);
        assert_eq!(types[5], Physical::DOUBLE);
        assert_eq!(types[6], Physical::INT64);
        assert_eq!(types[7], Physical::BYTE_ARRAY);
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert_eq!(
            rows,
            [
                r#"{image_path: "a", key: "a", caption: "caption a", url: "http://x/a", ok: true, score: 1.0, width: 3, exif: null}"#,
                r#"{image_path: "b", key: "b", caption: null, url: null, ok: null, score: 0.5, width: 5, exif: "{"k":1}"}"#,
            ]
        );
    }
}
