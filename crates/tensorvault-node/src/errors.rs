//! Core errors → JS errors. The reason string of the `napi::Error` carries a JSON payload behind a
//! marker; `src/errors.ts` turns it into a `TensorVaultError` with the same `code`, message and
//! context. This file is the only place that decides codes.

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use napi::{Error, Status};
use tensorvault_core::checkpoint::CheckpointError;
use tensorvault_core::compress::CompressError;
use tensorvault_core::ecc::erasure::ErasureError;
use tensorvault_core::ecc::rs255::RsError;
use tensorvault_core::fold::FoldError;
use tensorvault_core::hash::HashError;
use tensorvault_core::io::IoError;
use tensorvault_core::safetensors::SafetensorsError;

/// Prefix that marks an error reason as a structured tensorvault error.
const MARKER: &str = "TVERR1:";

/// A JSON-encodable error: a stable code, a message and context fields.
pub struct TvError {
    code: &'static str,
    message: String,
    context: Vec<(&'static str, Ctx)>,
}

/// One context value.
pub enum Ctx {
    Str(String),
    Num(f64),
}

impl TvError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            context: Vec::new(),
        }
    }

    #[must_use]
    pub fn with(mut self, key: &'static str, value: Ctx) -> Self {
        self.context.push((key, value));
        self
    }

    pub(crate) fn to_json(&self) -> String {
        let mut out = String::from("{\"code\":");
        push_json_str(&mut out, self.code);
        out.push_str(",\"message\":");
        push_json_str(&mut out, &self.message);
        out.push_str(",\"context\":{");
        for (i, (k, v)) in self.context.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(&mut out, k);
            out.push(':');
            match v {
                Ctx::Str(s) => push_json_str(&mut out, s),
                Ctx::Num(n) if n.is_finite() => out.push_str(&n.to_string()),
                Ctx::Num(_) => out.push_str("null"),
            }
        }
        out.push_str("}}");
        out
    }
}

impl From<TvError> for Error {
    fn from(e: TvError) -> Self {
        Error::new(Status::GenericFailure, format!("{MARKER}{}", e.to_json()))
    }
}

pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[allow(clippy::cast_precision_loss)] // context numbers: lengths far below 2^53
pub fn num(n: u64) -> Ctx {
    Ctx::Num(n as f64)
}

impl From<&IoError> for TvError {
    fn from(e: &IoError) -> Self {
        let code = match e {
            IoError::NotFound { .. } => "TV_NOT_FOUND",
            IoError::PermissionDenied { .. } => "TV_PERMISSION_DENIED",
            IoError::IsADirectory { .. } => "TV_IS_DIRECTORY",
            IoError::NotARegularFile { .. } => "TV_NOT_A_FILE",
            IoError::Truncated { .. } => "TV_FILE_CHANGED",
            IoError::Os { .. } => "TV_IO",
            // The destination's error, classified as an error on the file itself would be.
            IoError::Temporary { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => "TV_NOT_FOUND",
                std::io::ErrorKind::PermissionDenied => "TV_PERMISSION_DENIED",
                std::io::ErrorKind::IsADirectory => "TV_IS_DIRECTORY",
                _ => "TV_IO",
            },
        };
        let mut out = TvError::new(code, e.to_string())
            .with("path", Ctx::Str(e.path().display().to_string()));
        if let Some(errno) = e.errno() {
            out = out.with("errno", Ctx::Num(f64::from(errno)));
        }
        if let IoError::Os { op, .. } | IoError::Temporary { op, .. } = e {
            out = out.with("syscall", Ctx::Str((*op).to_string()));
        }
        if let IoError::Temporary { temp, .. } = e {
            out = out.with("tempPath", Ctx::Str(temp.display().to_string()));
        }
        if let IoError::Truncated {
            expected, actual, ..
        } = e
        {
            out = out
                .with("expected", num(*expected))
                .with("actual", num(*actual));
        }
        out
    }
}

impl From<CheckpointError> for TvError {
    fn from(e: CheckpointError) -> Self {
        let message = e.to_string();
        match e {
            CheckpointError::Safetensors(e) => e.into(),
            CheckpointError::Io(e) => (&e).into(),
            CheckpointError::Erasure(e) => e.into(),
            CheckpointError::Hash(e) => e.into(),
            CheckpointError::SizeMismatch {
                name,
                expected,
                actual,
            } => TvError::new("TV_TENSOR_SIZE_MISMATCH", message)
                .with("name", Ctx::Str(name))
                .with("expected", num(expected))
                .with("actual", num(actual)),
            CheckpointError::InvalidArguments { .. } => {
                TvError::new("TV_INVALID_ARGUMENT", message)
                    .with("argument", Ctx::Str("tensors".into()))
            }
            CheckpointError::Cancelled => TvError::new("TV_ABORTED", message),
        }
    }
}

impl From<HashError> for TvError {
    fn from(e: HashError) -> Self {
        match &e {
            HashError::Io(io) => io.into(),
            HashError::InvalidChunkSize {
                chunk_size,
                min,
                max,
            } => TvError::new("TV_INVALID_ARGUMENT", e.to_string())
                .with("argument", Ctx::Str("chunkSize".into()))
                .with("actual", num(*chunk_size))
                .with("min", num(*min))
                .with("max", num(*max)),
            HashError::LeafCountMismatch {
                expected, actual, ..
            } => TvError::new("TV_CORRUPT", e.to_string())
                .with("expected", num(*expected))
                .with("actual", num(*actual)),
            HashError::ThreadPool { .. } => TvError::new("TV_INTERNAL", e.to_string()),
            HashError::Cancelled => TvError::new("TV_ABORTED", e.to_string()),
            HashError::InvalidBatchBounds {
                index,
                end,
                previous,
                len,
            } => TvError::new("TV_INVALID_ARGUMENT", e.to_string())
                .with("argument", Ctx::Str("ends".into()))
                .with("index", num(*index))
                .with("actual", num(*end))
                .with("previous", num(*previous))
                .with("length", num(*len)),
        }
    }
}

impl From<CompressError> for TvError {
    fn from(e: CompressError) -> Self {
        let message = e.to_string();
        match e {
            CompressError::InvalidLevel { level, min, max } => {
                #[allow(clippy::cast_precision_loss)] // a level; display only
                let actual = Ctx::Num(level as f64);
                TvError::new("TV_INVALID_ARGUMENT", message)
                    .with("argument", Ctx::Str("level".into()))
                    .with("actual", actual)
                    .with("min", num(u64::from(min)))
                    .with("max", num(u64::from(max)))
            }
            CompressError::InvalidMemberSize {
                member_size,
                min,
                max,
            } => TvError::new("TV_INVALID_ARGUMENT", message)
                .with("argument", Ctx::Str("memberSize".into()))
                .with("actual", num(member_size))
                .with("min", num(min))
                .with("max", num(max)),
            CompressError::OutputBound { input_len } => {
                TvError::new("TV_INTERNAL", message).with("length", num(input_len))
            }
            CompressError::ThreadPool { threads, .. } => {
                TvError::new("TV_INTERNAL", message).with("threads", num(threads as u64))
            }
            CompressError::Cancelled => TvError::new("TV_ABORTED", message),
        }
    }
}

impl From<SafetensorsError> for TvError {
    #[allow(clippy::too_many_lines)] // one arm per failure, each with its context
    fn from(e: SafetensorsError) -> Self {
        use SafetensorsError as E;
        let message = e.to_string();
        let invalid = |reason: &str| {
            TvError::new("TV_SAFETENSORS_INVALID", message.clone())
                .with("reason", Ctx::Str(reason.to_string()))
        };
        let named = |t: TvError, name: &str| t.with("name", Ctx::Str(name.to_string()));
        match &e {
            E::HeaderTooSmall { file_len } => {
                invalid("header_too_small").with("actual", num(*file_len))
            }
            E::HeaderTooLarge { header_len, max } => invalid("header_too_large")
                .with("actual", num(*header_len))
                .with("max", num(*max)),
            E::HeaderPastEnd {
                header_len,
                file_len,
            } => invalid("header_past_end")
                .with("actual", num(*header_len))
                .with("fileLength", num(*file_len)),
            E::HeaderNotUtf8 { offset } => invalid("header_not_utf8").with("offset", num(*offset)),
            E::HeaderNotJson { line, column, .. } => invalid("header_not_json")
                .with("line", num(*line))
                .with("column", num(*column)),
            E::HeaderNotObject { .. } => invalid("header_not_object"),
            E::MetadataNotStringMap { .. } => invalid("metadata_not_string_map"),
            E::DuplicateName { name } => named(invalid("duplicate_name"), name),
            E::InvalidTensorEntry { name, .. } => named(invalid("invalid_tensor_entry"), name),
            E::UnknownDtype { name, dtype } => {
                named(invalid("unknown_dtype"), name).with("dtype", Ctx::Str(dtype.clone()))
            }
            E::OffsetsReversed { name, start, end } => named(invalid("offsets_reversed"), name)
                .with("start", num(*start))
                .with("end", num(*end)),
            E::OffsetGap {
                name,
                start,
                expected,
            } => named(invalid("offset_gap"), name)
                .with("expected", num(*expected))
                .with("actual", num(*start)),
            E::OffsetOverlap {
                name,
                start,
                expected,
            } => named(invalid("offset_overlap"), name)
                .with("expected", num(*expected))
                .with("actual", num(*start)),
            E::ShapeOverflow { name, .. } => named(invalid("shape_overflow"), name),
            E::MisalignedBits { name, elements, .. } => {
                named(invalid("misaligned_bits"), name).with("elements", num(*elements))
            }
            E::SizeMismatch {
                name,
                expected,
                actual,
            } => named(invalid("size_mismatch"), name)
                .with("expected", num(*expected))
                .with("actual", num(*actual)),
            E::DataPastEnd {
                name,
                end,
                data_len,
            } => named(invalid("data_past_end"), name)
                .with("actual", num(*end))
                .with("expected", num(*data_len)),
            E::TrailingBytes {
                data_end,
                data_len,
                trailing,
            } => invalid("trailing_bytes")
                .with("expected", num(*data_end))
                .with("actual", num(*data_len))
                .with("trailing", num(*trailing)),
            E::TensorNotFound { name } => {
                TvError::new("TV_TENSOR_NOT_FOUND", message).with("name", Ctx::Str(name.clone()))
            }
            E::InvalidName { name, .. } => TvError::new("TV_INVALID_ARGUMENT", message)
                .with("argument", Ctx::Str("tensors".into()))
                .with("name", Ctx::Str(name.clone())),
            E::WriteOverflow {
                name,
                expected,
                actual,
            }
            | E::WriteIncomplete {
                name,
                expected,
                actual,
            } => TvError::new("TV_TENSOR_SIZE_MISMATCH", message)
                .with("name", Ctx::Str(name.clone()))
                .with("expected", num(*expected))
                .with("actual", num(*actual)),
            E::FileChanged {
                path,
                expected,
                actual,
            } => TvError::new("TV_FILE_CHANGED", message)
                .with("path", Ctx::Str(path.display().to_string()))
                .with("expected", num(*expected))
                .with("actual", num(*actual)),
            E::Cancelled => TvError::new("TV_ABORTED", message),
            E::Io(io) => io.into(),
        }
    }
}

impl From<RsError> for TvError {
    fn from(e: RsError) -> Self {
        let message = e.to_string();
        match e {
            RsError::InvalidParityCount { n } => TvError::new("TV_INVALID_ARGUMENT", message)
                .with("argument", Ctx::Str("parity".into()))
                .with("actual", num(n))
                .with("min", num(1))
                .with("max", num(254)),
            RsError::UnknownCodec { name } => {
                TvError::new("TV_ECC_UNKNOWN_CODEC", message).with("name", Ctx::Str(name))
            }
            RsError::UnknownProtection { level } => {
                TvError::new("TV_ECC_UNKNOWN_PROTECTION", message).with("level", Ctx::Str(level))
            }
            RsError::ParityLengthMismatch {
                data_len,
                expected,
                actual,
            } => TvError::new("TV_ECC_PARITY_LENGTH", message)
                .with("dataLength", num(data_len))
                .with("expected", num(expected))
                .with("actual", num(actual)),
            RsError::InvalidInlineLength { len, n } => {
                TvError::new("TV_ECC_INVALID_LENGTH", message)
                    .with("length", num(len))
                    .with("parity", num(n))
            }
            RsError::ErasureOutOfRange { position, len } => {
                TvError::new("TV_INVALID_ARGUMENT", message)
                    .with("argument", Ctx::Str("erasures".into()))
                    .with("position", num(position))
                    .with("length", num(len))
            }
            RsError::Uncorrectable {
                block,
                offset,
                end,
                n,
            } => TvError::new("TV_ECC_UNCORRECTABLE", message)
                .with("block", num(block))
                .with("offset", num(offset))
                .with("end", num(end))
                .with("parity", num(n)),
            RsError::ThreadPool { threads, .. } => {
                TvError::new("TV_INTERNAL", message).with("threads", num(threads as u64))
            }
            RsError::Cancelled => TvError::new("TV_ABORTED", message),
        }
    }
}

fn join(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

impl From<ErasureError> for TvError {
    fn from(e: ErasureError) -> Self {
        let msg = e.to_string();
        match e {
            ErasureError::Io(io) => (&io).into(),
            ErasureError::InvalidShardCounts { k, m, max } => {
                TvError::new("TV_INVALID_ARGUMENT", msg)
                    .with("argument", Ctx::Str("k/m".into()))
                    .with("k", num(k as u64))
                    .with("m", num(m as u64))
                    .with("max", num(max as u64))
            }
            ErasureError::InvalidChunkSize { chunk_size } => {
                TvError::new("TV_INVALID_ARGUMENT", msg)
                    .with("argument", Ctx::Str("chunkSize".into()))
                    .with("actual", num(chunk_size))
            }
            ErasureError::StripeTooLarge { bytes, max } => TvError::new("TV_INVALID_ARGUMENT", msg)
                .with("argument", Ctx::Str("chunkSize".into()))
                .with("actual", num(bytes))
                .with("max", num(max)),
            ErasureError::InvalidLevel { level } => TvError::new("TV_INVALID_ARGUMENT", msg)
                .with("argument", Ctx::Str("level".into()))
                .with("actual", Ctx::Str(level)),
            ErasureError::ShardCountMismatch { expected, actual } => {
                TvError::new("TV_INVALID_ARGUMENT", msg)
                    .with("argument", Ctx::Str("shards".into()))
                    .with("expected", num(expected as u64))
                    .with("actual", num(actual as u64))
            }
            ErasureError::ShardLengthMismatch => {
                TvError::new("TV_INVALID_ARGUMENT", msg).with("argument", Ctx::Str("shards".into()))
            }
            ErasureError::TooManyErasures { lost, budget } => {
                TvError::new("TV_ECC_UNREPAIRABLE", msg)
                    .with("lost", num(lost as u64))
                    .with("budget", num(budget as u64))
            }
            ErasureError::SingularMatrix | ErasureError::WorkerPanicked { .. } => {
                TvError::new("TV_INTERNAL", msg)
            }
            ErasureError::WideCodec { reason } => {
                TvError::new("TV_INTERNAL", msg).with("reason", Ctx::Str(reason))
            }
            ErasureError::WideShape { k, chunks } => TvError::new("TV_INVALID_ARGUMENT", msg)
                .with("argument", Ctx::Str("k".into()))
                .with("k", num(k as u64))
                .with("chunks", num(chunks)),
            ErasureError::SidecarIsTheFile { path, sidecar } => {
                TvError::new("TV_INVALID_ARGUMENT", msg)
                    .with("argument", Ctx::Str("sidecar".into()))
                    .with("path", Ctx::Str(path.display().to_string()))
                    .with("sidecar", Ctx::Str(sidecar.display().to_string()))
            }
            ErasureError::FileTooLarge { len, max } => TvError::new("TV_INVALID_ARGUMENT", msg)
                .with("actual", num(len))
                .with("max", num(max)),
            ErasureError::SidecarCorrupt { path, reason } => {
                TvError::new("TV_ECC_SIDECAR_CORRUPT", msg)
                    .with("path", Ctx::Str(path.display().to_string()))
                    .with("reason", Ctx::Str(reason))
            }
            ErasureError::Unrepairable {
                path,
                stripes,
                chunks,
                ..
            } => TvError::new("TV_ECC_UNREPAIRABLE", msg)
                .with("path", Ctx::Str(path.display().to_string()))
                .with("stripes", Ctx::Str(join(&stripes)))
                .with("chunks", Ctx::Str(join(&chunks))),
            ErasureError::StaleSidecar {
                path,
                sidecar,
                differing_bytes,
                exact: _,
                file_len,
            } => TvError::new("TV_ECC_STALE_SIDECAR", msg)
                .with("path", Ctx::Str(path.display().to_string()))
                .with("sidecar", Ctx::Str(sidecar.display().to_string()))
                .with("differingBytes", num(differing_bytes))
                .with("fileLength", num(file_len)),
            ErasureError::RepairVerification { path, reason } => {
                TvError::new("TV_ECC_REPAIR_FAILED", msg)
                    .with("path", Ctx::Str(path.display().to_string()))
                    .with("reason", Ctx::Str(reason))
            }
            ErasureError::ChunkOutOfRange { chunk, chunks } => {
                TvError::new("TV_INVALID_ARGUMENT", msg)
                    .with("argument", Ctx::Str("chunks".into()))
                    .with("actual", num(chunk))
                    .with("max", num(chunks.saturating_sub(1)))
            }
            ErasureError::FileChanged { path } => TvError::new("TV_FILE_CHANGED", msg)
                .with("path", Ctx::Str(path.display().to_string())),
            ErasureError::Cancelled => TvError::new("TV_ABORTED", msg),
        }
    }
}

impl From<FoldError> for TvError {
    fn from(e: FoldError) -> Self {
        let message = e.to_string();
        let chunk = e.chunk().map(str::to_string);
        let out = match e {
            FoldError::Io(io) => return (&io).into(),
            FoldError::Invalid { reason, offset, .. } => {
                let t = TvError::new("TV_FOLD_INVALID", message)
                    .with("reason", Ctx::Str(reason.into()));
                match offset {
                    Some(o) => t.with("offset", num(o)),
                    None => t,
                }
            }
            FoldError::Corrupt { check, .. } => {
                TvError::new("TV_FOLD_CORRUPT", message).with("check", Ctx::Str(check.into()))
            }
            FoldError::Unverifiable { reason, .. } => TvError::new("TV_FOLD_UNVERIFIABLE", message)
                .with("reason", Ctx::Str(reason.into())),
            FoldError::KeyRequired { .. } => TvError::new("TV_FOLD_KEY_REQUIRED", message),
            FoldError::DecryptFailed { .. } => TvError::new("TV_FOLD_DECRYPT_FAILED", message),
            FoldError::Signature { what, .. } => {
                TvError::new("TV_SIGNATURE_INVALID", message).with("what", Ctx::Str(what.into()))
            }
            FoldError::Policy { rule, .. } => {
                TvError::new("TV_FOLD_POLICY", message).with("rule", Ctx::Str(rule.into()))
            }
            FoldError::Budget {
                what,
                limit,
                actual,
                ..
            } => TvError::new("TV_BUDGET_EXCEEDED", message)
                .with("what", Ctx::Str(what.into()))
                .with("limit", num(limit))
                .with("actual", num(actual)),
            FoldError::Unsupported { .. } => TvError::new("TV_FOLD_UNSUPPORTED", message),
            FoldError::ChunkNotFound { .. } => TvError::new("TV_FOLD_CHUNK_NOT_FOUND", message),
            FoldError::InvalidArgument { argument, .. } => {
                TvError::new("TV_INVALID_ARGUMENT", message)
                    .with("argument", Ctx::Str(argument.into()))
            }
            FoldError::Cancelled => TvError::new("TV_ABORTED", message),
        };
        match chunk {
            Some(c) => out.with("chunk", Ctx::Str(c)),
            None => out,
        }
    }
}

/// Run `f`, turning a panic into a `TV_INTERNAL` error so that it never unwinds into Node.
pub fn guard<T>(f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(TvError::new(
                "TV_INTERNAL",
                format!("internal error in the native core (a bug): {what}"),
            )
            .into())
        }
    }
}

/// An argument the binding rejects.
pub fn invalid_argument(argument: &'static str, message: impl Into<String>) -> Error {
    TvError::new("TV_INVALID_ARGUMENT", message)
        .with("argument", Ctx::Str(argument.into()))
        .into()
}
