//! NumPy `.npy` (format version 1.0) reading and writing for little-endian float32 arrays (and float16, the
//! form clip-retrieval stores embeddings in), the format `numpy.save` writes and `numpy.load` reads; enough for
//! embeddings and pixel tensors.

use std::io::Write;
use std::path::Path;

use crate::error::{ClipError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The header of a C-ordered little-endian array of `descr` (`<f4`, `<f2`) and `shape` (magic, version 1.0,
/// padded dict).
fn header(descr: &str, shape: &[usize]) -> Result<Vec<u8>> {
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
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64 (numpy's alignment).
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len())
        .map_err(|_| ClipError::InvalidInput("npy: shape too long for a header".into()))?;
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    Ok(out)
}

/// Values of an array of `shape`, or an error when the product overflows.
fn element_count(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| ClipError::InvalidInput(format!("npy: shape {shape:?} is too large")))
}

/// Serialises a C-ordered float32 array of the given shape.
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    serialise(shape, data, "<f4", |v, out| {
        out.extend_from_slice(&v.to_le_bytes())
    })
}

/// Serialises a C-ordered array as float16 (`<f2`), each value rounded to nearest even as numpy's
/// `astype(np.float16)` does.
pub fn to_bytes_f16(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    serialise(shape, data, "<f2", |v, out| {
        out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes())
    })
}

fn serialise(
    shape: &[usize],
    data: &[f32],
    descr: &str,
    encode: impl Fn(f32, &mut Vec<u8>),
) -> Result<Vec<u8>> {
    let expected = element_count(shape)?;
    if expected != data.len() {
        return Err(ClipError::InvalidInput(format!(
            "npy: shape {shape:?} needs {expected} values, got {}",
            data.len()
        )));
    }
    let mut out = header(descr, shape)?;
    for value in data {
        encode(*value, &mut out);
    }
    Ok(out)
}

/// Writes a float32 array row by row, so that arrays larger than memory can be written: the shape is
/// declared first, [`NpyWriter::finish`] checks that exactly that many values came. The output is an
/// [`clip_io::OutputFile`]: a regular file appears whole or not at all, a device is written in place.
pub struct NpyWriter {
    out: clip_io::OutputFile,
    expected: usize,
    written: usize,
    shape: Vec<usize>,
}

impl NpyWriter {
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self> {
        let expected = element_count(shape)?;
        let mut out = clip_io::OutputFile::create(path)?;
        let bytes = header("<f4", shape)?;
        out.write_all(&bytes)
            .map_err(|source| write_error(path, source))?;
        Ok(NpyWriter {
            out,
            expected,
            written: 0,
            shape: shape.to_vec(),
        })
    }

    /// Appends values in C order.
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        if self.written + values.len() > self.expected {
            return Err(ClipError::InvalidInput(format!(
                "npy: more than the {} values of shape {:?}",
                self.expected, self.shape
            )));
        }
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let path = self.out.path().to_path_buf();
        self.out
            .write_all(&bytes)
            .map_err(|source| write_error(&path, source))?;
        self.written += values.len();
        Ok(())
    }

    /// Checks the count and makes the file visible.
    pub fn finish(self) -> Result<()> {
        if self.written != self.expected {
            return Err(ClipError::InvalidInput(format!(
                "npy: shape {:?} needs {} values, got {}",
                self.shape, self.expected, self.written
            )));
        }
        Ok(self.out.commit()?)
    }
}

fn write_error(path: &Path, source: std::io::Error) -> ClipError {
    clip_io::FileError::Write {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// Writes the array to `path` (see [`NpyWriter`]): never a partial regular file, never a replaced device.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let mut writer = NpyWriter::create(path, shape)?;
    writer.write(data)?;
    writer.finish()
}

/// Reads a little-endian float32 (or float64, converted) C-ordered `.npy` file: (shape, values).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = clip_io::read_input(path, clip_io::Input::Data)?;
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
    } else if descr.starts_with("<f2") {
        2
    } else if descr.starts_with("<f8") {
        8
    } else {
        let shown: String = descr.chars().take(6).collect();
        return Err(format!("unsupported dtype {shown}"));
    };
    if field("'fortran_order'")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = field("'shape'")?;
    let inner = shape_text.strip_prefix('(').ok_or("malformed shape")?;
    let close = inner.find(')').ok_or("malformed shape")?;
    let shape = inner[..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("malformed shape entry {s:?}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let payload = &bytes[data_start..];
    if count.checked_mul(width) != Some(payload.len()) {
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
    } else if width == 2 {
        payload
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
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
    fn float16_rounds_to_nearest_even_and_reads_back() {
        // 1 + 2^-11 lies halfway between two float16 values: it rounds to the even one, 1.0.
        let values = [1.0 + 2f32.powi(-11), -0.333_333, 65504.0, 1e-8];
        let bytes = to_bytes_f16(&[2, 2], &values).unwrap();
        assert!(std::str::from_utf8(&bytes[10..64])
            .unwrap()
            .contains("'<f2'"));
        let (shape, back) = from_bytes(&bytes).unwrap();
        assert_eq!(shape, vec![2, 2]);
        assert_eq!(back[0], 1.0);
        assert_eq!(back[1], -0.333_251_95);
        assert_eq!(back[2], 65504.0);
        assert_eq!(back[3], 0.0);
    }

    #[test]
    fn one_dimensional_shape_has_trailing_comma() {
        let bytes = to_bytes(&[3], &[0.0; 3]).unwrap();
        let text = String::from_utf8_lossy(&bytes[10..]);
        assert!(text.contains("'shape': (3,)"), "{text}");
    }

    #[test]
    fn streamed_rows_equal_one_write_and_short_streams_write_nothing() {
        let dir = std::env::temp_dir().join(format!("clip-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rows.npy");
        let mut w = NpyWriter::create(&path, &[3, 2]).unwrap();
        for row in [[1.0, 2.0], [f32::NAN, f32::NAN], [5.0, 6.0]] {
            w.write(&row).unwrap();
        }
        w.finish().unwrap();
        let (shape, values) = read_f32(&path).unwrap();
        assert_eq!(shape, vec![3, 2]);
        assert_eq!(values[..2], [1.0, 2.0]);
        assert!(values[2].is_nan() && values[3].is_nan());
        let mut short = NpyWriter::create(&path, &[3, 2]).unwrap();
        short.write(&[9.0, 9.0]).unwrap();
        assert!(short.finish().is_err());
        // The earlier complete file is untouched.
        assert_eq!(read_f32(&path).unwrap().1[..2], [1.0, 2.0]);
        let mut long = NpyWriter::create(&path, &[1]).unwrap();
        assert!(long.write(&[1.0, 2.0]).is_err());
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
