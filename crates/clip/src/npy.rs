//! NumPy `.npy` (format version 1.0) reading and writing for little-endian float32 arrays, the format
//! `numpy.save` writes and `numpy.load` reads; enough for embeddings and pixel tensors.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{ClipError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Serialises a C-ordered float32 array of the given shape.
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let expected: usize = shape.iter().product();
    if expected != data.len() {
        return Err(ClipError::InvalidInput(format!(
            "npy: shape {shape:?} needs {expected} values, got {}",
            data.len()
        )));
    }
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64 (numpy's alignment).
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len())
        .map_err(|_| ClipError::InvalidInput("npy: shape too long for a header".into()))?;
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for value in data {
        out.extend_from_slice(&value.to_le_bytes());
    }
    Ok(out)
}

/// Writes the array to `path` through a temporary file, so a failed write never leaves a partial `.npy`.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let bytes = to_bytes(shape, data)?;
    let io_err = |source| ClipError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("npy.partial");
    let mut file = std::fs::File::create(&tmp).map_err(io_err)?;
    file.write_all(&bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err)
}

/// Reads a little-endian float32 (or float64, converted) C-ordered `.npy` file: (shape, values).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| ClipError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    from_bytes(&bytes)
        .map_err(|reason| ClipError::InvalidInput(format!("{}: {reason}", path.display())))
}

/// Parses `.npy` bytes; the error says what is wrong with them.
pub fn from_bytes(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file".into());
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let data_start = header_start + header_len;
    let header = bytes
        .get(header_start..data_start)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    let field = |key: &str| -> std::result::Result<&str, String> {
        let at = header.find(key).ok_or(format!("header lacks {key}"))?;
        Ok(header[at + key.len()..].trim_start_matches([':', ' ', '\'']))
    };
    let descr = field("'descr'")?;
    let width = if descr.starts_with("<f4") {
        4
    } else if descr.starts_with("<f8") {
        8
    } else {
        return Err(format!(
            "unsupported dtype {}",
            &descr[..descr.len().min(6)]
        ));
    };
    if field("'fortran_order'")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = field("'shape'")?;
    let close = shape_text.find(')').ok_or("malformed shape")?;
    let shape = shape_text[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("malformed shape entry {s:?}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let count: usize = shape.iter().product();
    let payload = &bytes[data_start..];
    if payload.len() != count * width {
        return Err(format!(
            "data holds {} bytes, shape {shape:?} needs {}",
            payload.len(),
            count * width
        ));
    }
    let values = if width == 4 {
        payload
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        payload
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()
    };
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_round_trips() {
        let bytes = to_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let (shape, values) = from_bytes(&bytes).unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
    }

    #[test]
    fn one_dimensional_shape_has_trailing_comma() {
        let bytes = to_bytes(&[3], &[0.0; 3]).unwrap();
        let text = String::from_utf8_lossy(&bytes[10..]);
        assert!(text.contains("'shape': (3,)"), "{text}");
    }

    #[test]
    fn rejects_mismatched_data_and_garbage() {
        assert!(to_bytes(&[2, 2], &[0.0; 3]).is_err());
        assert!(from_bytes(b"hello world").is_err());
        let mut bytes = to_bytes(&[4], &[0.0; 4]).unwrap();
        bytes.truncate(bytes.len() - 2);
        assert!(from_bytes(&bytes).is_err());
    }
}
