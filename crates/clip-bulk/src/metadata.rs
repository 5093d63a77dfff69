//! `metadata_{i}.parquet` as clip-retrieval writes it with pandas: one row per embedding row, columns
//! `image_path`, `caption`, then every field of the samples' `.json` in the order the files write them (img2dataset
//! writes `url`, `key`, ... there), then `key` when no `.json` had one. A field's column type is taken from its
//! values in the partition: booleans, integers, floats or strings; anything else (nested objects, mixed kinds) is
//! stored as its JSON text; a field that is null in every row is Arrow's `null` type, as pandas writes it.
//! Missing values are nulls.

use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde_json::Value;

use crate::fields::Fields;

/// One row's metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataRow {
    pub image_path: String,
    pub key: String,
    pub caption: Option<String>,
    /// The sample's `.json` fields (or a CSV row's other columns), in file order.
    pub fields: Fields,
}

/// Fields that are columns of their own (a `.json`'s copy of them is not repeated), as clip-retrieval drops them.
const OWN_COLUMNS: [&str; 2] = ["image_path", "caption"];

enum Column {
    /// No row has a value.
    Null(usize),
    Bool(Vec<Option<bool>>),
    Int(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

impl Column {
    /// The narrowest column type holding every value of `values`.
    fn infer(values: Vec<Option<&Value>>) -> Column {
        let present = || values.iter().flatten().filter(|v| !v.is_null());
        if present().next().is_none() {
            return Column::Null(values.len());
        }
        if present().all(|v| v.is_boolean()) {
            Column::Bool(values.iter().map(|v| v.and_then(Value::as_bool)).collect())
        } else if present().all(|v| v.is_i64()) {
            Column::Int(values.iter().map(|v| v.and_then(Value::as_i64)).collect())
        } else if present().all(|v| v.is_number()) {
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
            // How Arrow stores its null type in parquet.
            Column::Null(_) => (Physical::INT32, Some(LogicalType::Unknown)),
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
    let mut names: Vec<String> = vec!["image_path".into(), "caption".into()];
    let mut columns = vec![
        Column::Text(rows.iter().map(|r| Some(r.image_path.clone())).collect()),
        Column::Text(rows.iter().map(|r| r.caption.clone()).collect()),
    ];
    let mut fields: Vec<&str> = Vec::new();
    for row in rows {
        for (name, _) in &row.fields.0 {
            if !OWN_COLUMNS.contains(&name.as_str()) && !fields.contains(&name.as_str()) {
                fields.push(name);
            }
        }
    }
    for field in &fields {
        names.push(field.to_string());
        columns.push(if *field == "key" {
            // Every row has a key: the sample's own where its `.json` lacked one (or did not parse).
            Column::Text(
                rows.iter()
                    .map(|r| match r.fields.get("key") {
                        Some(Value::String(key)) => Some(key.clone()),
                        Some(Value::Null) | None => Some(r.key.clone()),
                        Some(other) => Some(other.to_string()),
                    })
                    .collect(),
            )
        } else {
            Column::infer(rows.iter().map(|r| r.fields.get(field)).collect())
        });
    }
    if !fields.contains(&"key") {
        names.push("key".into());
        columns.push(Column::Text(
            rows.iter().map(|r| Some(r.key.clone())).collect(),
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
            Column::Null(count) => {
                column_writer
                    .typed::<parquet::data_type::Int32Type>()
                    .write_batch(&[], Some(&vec![0; *count]), None)?;
            }
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
        let row = |key: &str, json: &str| MetadataRow {
            image_path: key.into(),
            key: key.into(),
            caption: (key != "b").then(|| format!("caption {key}")),
            fields: serde_json::from_str(json).unwrap(),
        };
        let rows = [
            row(
                "a",
                r#"{"url": "http://x/a", "key": "a", "width": 3, "caption": "dropped", "ok": true, "score": 1, "err": null}"#,
            ),
            row("b", r#"{"width": 5, "score": 0.5, "exif": {"k": 1}}"#),
        ];
        let bytes = write_parquet(&rows).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "image_path",
                "caption",
                "url",
                "key",
                "width",
                "ok",
                "score",
                "err",
                "exif"
            ]
        );
        let types: Vec<Physical> = schema.columns().iter().map(|c| c.physical_type()).collect();
        assert_eq!(types[4], Physical::INT64);
        assert_eq!(types[5], Physical::BOOLEAN);
        assert_eq!(types[6], Physical::DOUBLE);
        assert_eq!(
            (types[7], schema.column(7).logical_type_ref()),
            (Physical::INT32, Some(&LogicalType::Unknown))
        );
        assert_eq!(types[8], Physical::BYTE_ARRAY);
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert_eq!(
            rows,
            [
                r#"{image_path: "a", caption: "caption a", url: "http://x/a", key: "a", width: 3, ok: true, score: 1.0, err: null, exif: null}"#,
                r#"{image_path: "b", caption: null, url: null, key: "b", width: 5, ok: null, score: 0.5, err: null, exif: "{"k":1}"}"#,
            ]
        );
        // Without a `key` field in any `.json`, the samples' keys are a column of their own, last.
        let plain = write_parquet(&[MetadataRow {
            image_path: "p".into(),
            key: "k".into(),
            ..Default::default()
        }])
        .unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(plain)).unwrap();
        let names: Vec<String> = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(names, ["image_path", "caption", "key"]);
    }
}
