//! safetensors: open + validate on the libuv pool, zero-copy external `ArrayBuffer`s over the private
//! mapping (each holds an `Arc` of the mapping, so pages outlive `close()` until the last view is
//! collected), ranged copies for tensors too large for one `ArrayBuffer`, and the streaming writer.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use napi::bindgen_prelude::{
    AsyncTask, Buffer, FromNapiValue, ObjectFinalize, Uint8Array, Unknown,
};
use napi::{sys, Env, Task};
use napi_derive::napi;
use tensorvault_core::io::{IoError, Populated};
use tensorvault_core::safetensors::{
    Dtype, SafetensorsFile, SafetensorsWriter, TensorInfo, TensorSpec,
};
use tensorvault_core::Control;

use crate::args::{locked, to_u64};
use crate::control::JobControl;
use crate::cost::GcCharge;
use crate::errors::{guard, invalid_argument, num, push_json_str, Ctx, TvError};
use crate::io::NativeFd;
use crate::region::external_region;

/// One `__metadata__` entry (order preserved: sorted by key).
#[napi(object)]
pub struct MetadataEntry {
    pub key: String,
    pub value: String,
}

/// One tensor's header entry (absolute file offset).
#[napi(object)]
pub struct NativeTensorEntry {
    pub name: String,
    pub dtype: String,
    /// The dimensions as numbers: exact up to 2^53 - 1, rounded above (see `exact_shape`).
    pub shape: Vec<f64>,
    /// Every dimension as decimal text, present only when one is above 2^53 - 1 (possible only for a
    /// zero-size tensor, e.g. `[9007199254740993, 0]`), where `shape` rounds it.
    pub exact_shape: Option<Vec<String>>,
    pub file_offset: f64,
    pub byte_length: f64,
}

/// The largest integer an f64 (a JS number) holds exactly with every smaller one: 2^53 - 1.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// `shape` as decimal text when a dimension is above [`MAX_SAFE_INTEGER`], else None.
fn exact_shape(shape: &[u64]) -> Option<Vec<String>> {
    shape
        .iter()
        .any(|&d| d > MAX_SAFE_INTEGER)
        .then(|| shape.iter().map(u64::to_string).collect())
}

/// An open, validated safetensors file. The header stays here: JS looks tensors up by name through
/// `info`, so opening a file costs the JS thread nothing per tensor (issue 13, item 14).
///
/// The file sits behind a mutex so that `close()` takes `&self`: napi-rs keeps the receiver borrowed
/// (shared) while an `AsyncTask` a method returned is in flight, so a `close(&mut self)` during a
/// `readRange()` or `prefetch()` threw an untyped `InvalidArg` error and left the file open. Each
/// task holds its own `Arc` of the file: it completes, and the descriptor is closed when the last
/// holder lets go.
///
/// While open it reports its descriptor and mapping to the garbage collector (`cost.rs`), so that a
/// loop dropping files without `close()` has them finalized before it runs out of descriptors.
#[napi(custom_finalize)]
pub struct NativeSafetensors {
    inner: Mutex<Option<Arc<SafetensorsFile>>>,
    charge: GcCharge,
}

/// Headers with more tensors than this are freed on a thread of their own when released (freeing a
/// million names takes the better part of 100 ms, which would otherwise land on the JS thread in
/// `close()` or in the garbage collector's finalizer).
const FREE_OFF_THREAD: usize = 10_000;

pub(crate) fn release(file: Option<Arc<SafetensorsFile>>) {
    if let Some(file) = file {
        if Arc::strong_count(&file) == 1 && file.header().tensor_count() > FREE_OFF_THREAD {
            // If no thread can be spawned, the closure (and the file) is dropped here instead.
            let _ = std::thread::Builder::new()
                .name("tv-free-header".into())
                .spawn(move || drop(file));
        }
    }
}

impl NativeSafetensors {
    /// A handle on a file the addon opened itself (the checkpoint open's fast path).
    pub(crate) fn from_file(file: SafetensorsFile) -> NativeSafetensors {
        NativeSafetensors {
            inner: Mutex::new(Some(Arc::new(file))),
            charge: GcCharge::default(),
        }
    }

    /// This handle, its cost reported to the collector (it is handed to JS).
    pub(crate) fn charged(self, env: Env) -> NativeSafetensors {
        self.charge.charge(env);
        self
    }
}

impl ObjectFinalize for NativeSafetensors {
    fn finalize(self, env: Env) -> napi::Result<()> {
        self.charge.release(env);
        Ok(())
    }
}

impl Drop for NativeSafetensors {
    fn drop(&mut self) {
        release(
            self.inner
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

pub struct OpenTask {
    path: PathBuf,
}

impl Task for OpenTask {
    type Output = SafetensorsFile;
    type JsValue = NativeSafetensors;

    fn compute(&mut self) -> napi::Result<SafetensorsFile> {
        guard(|| SafetensorsFile::open(&self.path).map_err(|e| open_error(e, &self.path)))
    }

    fn resolve(&mut self, env: Env, output: SafetensorsFile) -> napi::Result<NativeSafetensors> {
        Ok(NativeSafetensors::from_file(output).charged(env))
    }
}

fn open_error(
    e: tensorvault_core::safetensors::SafetensorsError,
    path: &std::path::Path,
) -> napi::Error {
    let has_path = matches!(
        e,
        tensorvault_core::safetensors::SafetensorsError::Io(_)
            | tensorvault_core::safetensors::SafetensorsError::FileChanged { .. }
    );
    let t = TvError::from(e);
    if has_path {
        t.into()
    } else {
        t.with("path", Ctx::Str(path.display().to_string())).into()
    }
}

/// Open and validate a safetensors file on the calling thread when its JSON header is at most
/// `maxHeader` bytes (a small header costs less than the libuv pool's round trip); `null` when it is
/// larger, after reading only its 8-byte length: open it with `openSafetensors` then.
#[napi]
pub fn open_safetensors_small(
    env: Env,
    path: String,
    max_header: f64,
) -> napi::Result<Option<NativeSafetensors>> {
    guard(|| {
        let path = PathBuf::from(path);
        let max = to_u64("maxHeader", max_header)?;
        let opened = SafetensorsFile::open_small(&path, max).map_err(|e| open_error(e, &path))?;
        #[cfg(feature = "test-hooks")]
        if opened.is_some() {
            crate::testing::after_header_read(&path.to_string_lossy());
        }
        Ok(opened.map(|f| NativeSafetensors::from_file(f).charged(env)))
    })
}

/// Open and validate a safetensors file on the libuv pool.
#[napi(ts_return_type = "Promise<NativeSafetensors>")]
pub fn open_safetensors(path: String) -> AsyncTask<OpenTask> {
    AsyncTask::new(OpenTask {
        path: PathBuf::from(path),
    })
}

/// `"shape":[…]` for a JSON object, and `,"exactShape":["…",…]` too when a dimension is above
/// [`MAX_SAFE_INTEGER`]: `JSON.parse` rounds such a number, so the exact dimensions go as strings as well.
/// Shared by the safetensors reader and the `.fold` reader's `STEN` chunks.
pub(crate) fn push_shape_json(out: &mut String, shape: &[u64]) {
    use std::fmt::Write as _;
    out.push_str("\"shape\":[");
    for (j, d) in shape.iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        let _ = write!(out, "{d}");
    }
    out.push(']');
    if shape.iter().any(|&d| d > MAX_SAFE_INTEGER) {
        out.push_str(",\"exactShape\":[");
        for (j, d) in shape.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{d}\"");
        }
        out.push(']');
    }
}

fn closed() -> napi::Error {
    TvError::new("TV_CLOSED", "the safetensors file is closed").into()
}

/// `n` as a JS number. Offsets and byte lengths are bounded by the file's size, far below 2^53; a
/// dimension is not (a zero-size tensor's other dimensions may be anything up to 2^64 - 1), so a shape
/// that holds one above 2^53 - 1 is also given exactly (`exact_shape`, `exactShape` in JSON).
#[allow(clippy::cast_precision_loss)]
fn f(n: u64) -> f64 {
    n as f64
}

fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(TvError::new(
            "TV_INTERNAL",
            format!("{what} failed with napi status {status}"),
        )
        .into())
    }
}

/// A fresh (engine-owned) `ArrayBuffer` holding a copy of `bytes`.
fn copied_buffer<'env>(env: &'env Env, bytes: &[u8]) -> napi::Result<Unknown<'env>> {
    let mut data: *mut c_void = std::ptr::null_mut();
    let mut value: sys::napi_value = std::ptr::null_mut();
    // SAFETY: plain N-API call on the current env; outputs are checked below.
    let status = unsafe {
        sys::napi_create_arraybuffer(env.raw(), bytes.len(), &raw mut data, &raw mut value)
    };
    check(status, "napi_create_arraybuffer")?;
    if !bytes.is_empty() && !data.is_null() {
        // SAFETY: `data` points to `bytes.len()` fresh bytes owned by the new ArrayBuffer.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.cast::<u8>(), bytes.len()) };
    }
    // SAFETY: `value` is a valid napi_value created just above.
    unsafe { Unknown::from_napi_value(env.raw(), value) }
}

#[napi]
impl NativeSafetensors {
    /// The open file (a clone of its `Arc`: the lock is not held while it is used).
    fn file(&self) -> napi::Result<Arc<SafetensorsFile>> {
        locked(&self.inner).clone().ok_or_else(closed)
    }

    /// The tensors in file order as one JSON array of `{name, dtype, shape, fileOffset, byteLength}`
    /// (one string crossing into JS is much cheaper than hundreds of N-API objects).
    #[napi]
    pub fn tensors_json(&self) -> napi::Result<String> {
        use std::fmt::Write as _;
        guard(|| {
            let file = self.file()?;
            let tensors = file.header().tensors();
            let mut out = String::with_capacity(tensors.len() * 96 + 2);
            out.push('[');
            for (i, t) in tensors.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"name\":");
                push_json_str(&mut out, t.name);
                let _ = write!(out, ",\"dtype\":\"{}\",", t.dtype);
                push_shape_json(&mut out, t.shape);
                let _ = write!(
                    out,
                    ",\"fileOffset\":{},\"byteLength\":{}}}",
                    file.absolute_offset(&t),
                    t.byte_len()
                );
            }
            out.push(']');
            Ok(out)
        })
    }

    /// Number of tensors.
    #[napi]
    pub fn tensor_count(&self) -> napi::Result<u32> {
        guard(|| {
            u32::try_from(self.file()?.header().tensors().len())
                .map_err(|_| TvError::new("TV_INTERNAL", "too many tensors").into())
        })
    }

    /// Tensor `name`'s entry, or None when the file has no such tensor (a hash lookup here: nothing is
    /// built per tensor on the JS side).
    #[napi]
    pub fn info(&self, name: String) -> napi::Result<Option<NativeTensorEntry>> {
        guard(|| {
            let file = self.file()?;
            Ok(file.header().get(&name).map(|t| NativeTensorEntry {
                name: t.name.to_string(),
                dtype: t.dtype.to_string(),
                shape: t.shape.iter().map(|&d| f(d)).collect(),
                exact_shape: exact_shape(t.shape),
                file_offset: f(file.absolute_offset(&t)),
                byte_length: f(t.byte_len()),
            }))
        })
    }

    /// Whether the file holds a tensor called `name`.
    #[napi]
    pub fn has(&self, name: String) -> napi::Result<bool> {
        guard(|| Ok(self.file()?.header().get(&name).is_some()))
    }

    /// The tensor names in file order, as one JSON array (one string crossing into JS).
    #[napi]
    pub fn names_json(&self) -> napi::Result<String> {
        guard(|| {
            let file = self.file()?;
            let tensors = file.header().tensors();
            let mut out = String::with_capacity(tensors.len() * 24 + 2);
            out.push('[');
            for (i, t) in tensors.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(&mut out, t.name);
            }
            out.push(']');
            Ok(out)
        })
    }

    /// Total bytes of tensor data (the data area's length).
    #[napi]
    pub fn data_length(&self) -> napi::Result<f64> {
        guard(|| Ok(f(self.file()?.header().data_len())))
    }

    /// The file's length in bytes, as mapped.
    #[napi]
    pub fn file_length(&self) -> napi::Result<f64> {
        guard(|| Ok(f(self.file()?.mapping().len())))
    }

    /// The `__metadata__` map (None when absent).
    #[napi]
    pub fn metadata(&self) -> napi::Result<Option<Vec<MetadataEntry>>> {
        guard(|| {
            Ok(self.file()?.header().metadata().map(|m| {
                m.iter()
                    .map(|(k, v)| MetadataEntry {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect()
            }))
        })
    }

    /// SHA-256 (hex) of the first `length` bytes of the file (a checkpoint's `header_sha256` check
    /// without opening and reading the file again), or null when the file is shorter. When `length` is
    /// the header's, the bytes hashed are the ones the header was parsed from at the open. Checked
    /// against a truncation since the open first.
    #[napi]
    pub fn header_sha256(&self, length: f64) -> napi::Result<Option<String>> {
        guard(|| {
            let file = self.file()?;
            let n = to_u64("length", length)?;
            file.check_unchanged().map_err(TvError::from)?;
            // The header as parsed (not as mapped now: a writer could have changed it since the open,
            // and the digest must vouch for the header the views are cut by); other lengths are the
            // mapped file's (such a digest does not match a block made for this header).
            let (len, digest) = file.header_sha256();
            if u64::try_from(len).ok() == Some(n) {
                return Ok(Some(tensorvault_core::hash::to_hex(&digest)));
            }
            let bytes = file.mapping().bytes();
            let Some(head) = usize::try_from(n).ok().and_then(|n| bytes.get(..n)) else {
                return Ok(None);
            };
            Ok(Some(tensorvault_core::hash::to_hex(
                &tensorvault_core::hash::sha256(head),
            )))
        })
    }

    /// The mapped file's own descriptor, for reads beside the mapping: the same file as the views by
    /// construction, without opening the path again (which could name another file by then). The
    /// returned object holds the file open (not a duplicate of its descriptor: one descriptor per
    /// open file, not two) until its `close()`, or until it is garbage-collected (a checkpoint
    /// dropped without `close()`, a worker terminated), whatever this handle's `close()` does.
    #[napi]
    pub fn dup_fd(&self, env: Env) -> napi::Result<NativeFd> {
        guard(|| Ok(NativeFd::new(self.file()?, env)))
    }

    /// The mapped file's state now, from `fstat` of its own descriptor (no duplicate made):
    /// `"dev ino size mtime_sec mtime_nsec ctime_sec ctime_nsec"` (decimal). A lazy checkpoint keys
    /// what it has checked to it.
    #[napi]
    pub fn file_stamp(&self) -> napi::Result<String> {
        guard(|| {
            let file = self.file()?;
            let m = file
                .mapping()
                .file()
                .metadata()
                .map_err(|e| TvError::from(&IoError::from_os(file.path(), "stat", e)))?;
            Ok(stamp_of(&m))
        })
    }

    /// Header length and file size.
    #[napi]
    pub fn data_start(&self) -> napi::Result<f64> {
        guard(|| Ok(f(self.file()?.header().data_start())))
    }

    /// Checks a view of tensor `name` before it is handed out (`byteOffset`/`byteLength` select a
    /// sub-range; by default the whole tensor): the range lies inside the tensor, it is at most
    /// `maxBytes` (`TV_TENSOR_TOO_LARGE` otherwise) and the file was not truncated since it was opened
    /// (`TV_FILE_CHANGED`). With `populate`, the range's pages are mapped first
    /// (`MADV_POPULATE_READ`) so that reading the view takes no page faults.
    #[napi]
    pub fn check_range(
        &self,
        name: String,
        byte_offset: f64,
        byte_length: Option<f64>,
        max_bytes: f64,
        populate: Option<bool>,
    ) -> napi::Result<()> {
        guard(|| {
            let file = self.file()?;
            let (info, offset, len) =
                checked_range(&file, &name, byte_offset, byte_length, max_bytes)?;
            if populate == Some(true) {
                file.populate(&info, offset, len).map_err(TvError::from)?;
            }
            Ok(())
        })
    }

    /// A copy of a checked range of tensor `name` in a new engine-owned `ArrayBuffer` (for runtimes
    /// that forbid external buffers, and for views whose alignment forbids a window on the mapping).
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn copy_range<'env>(
        &self,
        env: &'env Env,
        name: String,
        byte_offset: f64,
        byte_length: Option<f64>,
        max_bytes: f64,
    ) -> napi::Result<Unknown<'env>> {
        guard(|| {
            let file = self.file()?;
            let (info, offset, len) =
                checked_range(&file, &name, byte_offset, byte_length, max_bytes)?;
            let bytes = file.bytes_of(&info, offset, len).map_err(TvError::from)?;
            copied_buffer(env, bytes)
        })
    }

    /// A zero-copy external `ArrayBuffer` over bytes `offset..offset + length` of the mapped file
    /// (absolute offsets; `length` ≥ 1). Tensor views are typed-array windows on such region buffers,
    /// made in JS without crossing into the addon. The buffer holds the mapping alive until V8 collects
    /// it, so views outlive `close()`. Writes by JS land in private copy-on-write pages, never in the
    /// file. `TV_EXTERNAL_BUFFERS_UNAVAILABLE` where the runtime forbids external buffers.
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn region_buffer<'env>(
        &self,
        env: &'env Env,
        offset: f64,
        length: f64,
    ) -> napi::Result<Unknown<'env>> {
        guard(|| {
            let file = self.file()?;
            let (offset, length) = (to_u64("offset", offset)?, to_u64("length", length)?);
            file.check_unchanged().map_err(TvError::from)?;
            external_region(
                env,
                file.mapping(),
                offset,
                length,
                "this runtime forbids external ArrayBuffers; open with { copy: true } to copy each \
                 tensor instead",
            )
        })
    }

    /// Copy `length` bytes of tensor `name` from `offset` into a new Buffer, on the libuv pool.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn read_range(
        &self,
        name: String,
        offset: f64,
        length: f64,
    ) -> napi::Result<AsyncTask<ReadRangeTask>> {
        guard(|| {
            let file = self.file()?;
            file.info(&name).map_err(TvError::from)?;
            Ok(AsyncTask::new(ReadRangeTask {
                file: Some(file),
                name,
                offset: to_u64("offset", offset)?,
                length: to_u64("length", length)?,
            }))
        })
    }

    /// Map every page of the named tensors (all tensors when `names` is None) on the libuv pool, in
    /// parallel pieces (`MADV_POPULATE_READ`); resolves to false where the system has no such advice
    /// (nothing was done).
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn prefetch(
        &self,
        names: Option<Vec<String>>,
        control: &JobControl,
    ) -> napi::Result<AsyncTask<PrefetchTask>> {
        guard(|| {
            let file = self.file()?;
            if let Some(names) = &names {
                for n in names {
                    file.info(n).map_err(TvError::from)?;
                }
            }
            Ok(AsyncTask::new(PrefetchTask {
                file: Some(file),
                names,
                control: Arc::clone(&control.inner),
            }))
        })
    }

    /// Release this handle's reference to the file: its descriptor is closed now, or, when a
    /// `readRange()` or `prefetch()` is in flight, as soon as the last of them returns (each completes
    /// on its own reference). Views already handed out stay valid. Idempotent; never throws.
    #[napi]
    pub fn close(&self, env: Env) {
        let file = locked(&self.inner).take();
        release(file);
        self.charge.release(env);
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        locked(&self.inner).is_none()
    }
}

pub struct ReadRangeTask {
    /// Taken (and dropped) by `compute`, on the pool: a handle closed meanwhile has its descriptor
    /// closed there, not on the JS thread.
    file: Option<Arc<SafetensorsFile>>,
    name: String,
    offset: u64,
    length: u64,
}

impl Task for ReadRangeTask {
    type Output = Vec<u8>;
    type JsValue = Buffer;

    fn compute(&mut self) -> napi::Result<Vec<u8>> {
        guard(|| {
            let file = self.file.take().ok_or_else(closed)?;
            let info = file.info(&self.name).map_err(TvError::from)?;
            file.check_unchanged().map_err(TvError::from)?;
            let bytes = file
                .bytes_of(&info, self.offset, self.length)
                .map_err(TvError::from)?;
            let copy = bytes.to_vec();
            // Checked again after the copy: a truncation (or a media error) while copying makes the
            // SIGBUS guard fill pages with zeros, which must never be returned as the file's bytes.
            file.check_unchanged().map_err(TvError::from)?;
            Ok(copy)
        })
    }

    fn resolve(&mut self, _env: Env, output: Vec<u8>) -> napi::Result<Buffer> {
        Ok(output.into())
    }
}

pub struct PrefetchTask {
    /// Taken by `compute`, as in [`ReadRangeTask`].
    file: Option<Arc<SafetensorsFile>>,
    names: Option<Vec<String>>,
    control: Arc<Control>,
}

impl Task for PrefetchTask {
    type Output = bool;
    type JsValue = bool;

    fn compute(&mut self) -> napi::Result<bool> {
        guard(|| {
            let file = self.file.take().ok_or_else(closed)?;
            let infos = match &self.names {
                None => file.header().tensors().collect::<Vec<_>>(),
                Some(names) => names
                    .iter()
                    .map(|n| file.info(n))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(TvError::from)?,
            };
            let done = file
                .prefetch(&infos, &self.control)
                .map_err(TvError::from)?;
            Ok(done == Populated::Yes)
        })
    }

    fn resolve(&mut self, _env: Env, output: bool) -> napi::Result<bool> {
        Ok(output)
    }
}

/// Tensor `name`'s sub-range `byte_offset..byte_offset + byte_length` (default: to the tensor's end),
/// checked against the tensor, `max_bytes` and the file's current length.
fn checked_range<'f>(
    file: &'f SafetensorsFile,
    name: &str,
    byte_offset: f64,
    byte_length: Option<f64>,
    max_bytes: f64,
) -> napi::Result<(TensorInfo<'f>, u64, u64)> {
    let info = file.info(name).map_err(TvError::from)?;
    let offset = to_u64("byteOffset", byte_offset)?;
    let len = match byte_length {
        Some(l) => to_u64("byteLength", l)?,
        None => info.byte_len().saturating_sub(offset),
    };
    let max = to_u64("maxBytes", max_bytes)?;
    if len > max {
        return Err(TvError::new(
            "TV_TENSOR_TOO_LARGE",
            format!(
                "tensor {name:?} is {len} bytes, more than one ArrayBuffer may hold here ({max}); \
                 read it in chunks"
            ),
        )
        .with("name", Ctx::Str(name.to_string()))
        .with("actual", num(len))
        .with("max", num(max))
        .into());
    }
    file.check_unchanged().map_err(TvError::from)?;
    file.bytes_of(&info, offset, len).map_err(TvError::from)?;
    Ok((info, offset, len))
}

/// The streaming writer (see `tensorvault_core::safetensors::SafetensorsWriter`).
#[napi]
pub struct NativeSafetensorsWriter {
    inner: Arc<Mutex<Option<SafetensorsWriter>>>,
    order: Vec<String>,
}

/// Start writing `path`: declares every tensor; the returned writer's `order()` is the order in which
/// their bytes must be written.
#[napi]
pub fn create_safetensors_writer(
    path: String,
    names: Vec<String>,
    dtypes: Vec<String>,
    shapes: Vec<Vec<f64>>,
    metadata: Option<Vec<MetadataEntry>>,
) -> napi::Result<NativeSafetensorsWriter> {
    guard(|| {
        if names.len() != dtypes.len() || names.len() != shapes.len() {
            return Err(invalid_argument(
                "tensors",
                "names, dtypes and shapes differ in length",
            ));
        }
        let mut specs = Vec::with_capacity(names.len());
        for ((name, dtype), shape) in names.into_iter().zip(dtypes).zip(shapes) {
            let dtype = Dtype::parse(&dtype).ok_or_else(|| {
                invalid_argument("dtype", format!("tensor {name:?}: unknown dtype {dtype:?}"))
            })?;
            let shape = shape
                .into_iter()
                .map(|d| to_u64("shape", d))
                .collect::<napi::Result<Vec<u64>>>()?;
            specs.push(TensorSpec { name, dtype, shape });
        }
        let meta = match metadata {
            None => None,
            Some(entries) => {
                let mut m = BTreeMap::new();
                for e in entries {
                    if m.insert(e.key.clone(), e.value).is_some() {
                        return Err(invalid_argument(
                            "metadata",
                            format!("duplicate metadata key {:?}", e.key),
                        ));
                    }
                }
                Some(m)
            }
        };
        let writer = SafetensorsWriter::create(&PathBuf::from(path), specs, meta.as_ref())
            .map_err(TvError::from)?;
        let order = writer
            .layout()
            .tensors
            .iter()
            .map(|t| t.0.name.clone())
            .collect();
        Ok(NativeSafetensorsWriter {
            inner: Arc::new(Mutex::new(Some(writer))),
            order,
        })
    })
}

fn with_writer<T>(
    inner: &Mutex<Option<SafetensorsWriter>>,
    f: impl FnOnce(&mut SafetensorsWriter) -> napi::Result<T>,
) -> napi::Result<T> {
    let mut guard = inner
        .lock()
        .map_err(|_| napi::Error::from(TvError::new("TV_INTERNAL", "writer lock poisoned")))?;
    match guard.as_mut() {
        Some(w) => f(w),
        None => Err(TvError::new("TV_CLOSED", "the writer is finished or aborted").into()),
    }
}

#[napi]
impl NativeSafetensorsWriter {
    /// Tensor names in the order their bytes must be written.
    #[napi]
    pub fn order(&self) -> Vec<String> {
        self.order.clone()
    }

    /// Total bytes of the data area.
    #[napi]
    pub fn data_length(&self) -> napi::Result<f64> {
        guard(|| with_writer(&self.inner, |w| Ok(f(w.layout().data_len()))))
    }

    /// Append a small chunk on the JS thread (progress is added to `control`).
    #[napi]
    pub fn write_sync(&self, data: Uint8Array, control: &JobControl) -> napi::Result<()> {
        guard(|| {
            with_writer(&self.inner, |w| {
                w.write(&data).map_err(TvError::from)?;
                control.inner.set_total(w.layout().data_len());
                control.inner.add(data.len() as u64);
                Ok(())
            })
        })
    }

    /// Append a chunk on the libuv pool.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn write(&self, data: Uint8Array, control: &JobControl) -> AsyncTask<WriteTask> {
        AsyncTask::new(WriteTask {
            inner: Arc::clone(&self.inner),
            data,
            control: Arc::clone(&control.inner),
        })
    }

    /// Check completeness, fsync, rename into place, fsync the folder (on the libuv pool).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn finish(&self) -> AsyncTask<FinishTask> {
        AsyncTask::new(FinishTask {
            inner: Arc::clone(&self.inner),
        })
    }

    /// Abandon the file: the temporary file is removed and the destination left untouched.
    #[napi]
    pub fn abort(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.take();
        }
    }
}

pub struct WriteTask {
    inner: Arc<Mutex<Option<SafetensorsWriter>>>,
    data: Uint8Array,
    control: Arc<Control>,
}

impl Task for WriteTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        guard(|| {
            const STEP: usize = 8 << 20;
            with_writer(&self.inner, |w| {
                self.control.set_total(w.layout().data_len());
                for chunk in self.data.chunks(STEP) {
                    self.control.checkpoint().map_err(|_| {
                        napi::Error::from(TvError::new("TV_ABORTED", "the operation was cancelled"))
                    })?;
                    w.write(chunk).map_err(TvError::from)?;
                    self.control.add(chunk.len() as u64);
                }
                Ok(())
            })
        })
    }

    fn resolve(&mut self, _env: Env, (): ()) -> napi::Result<()> {
        Ok(())
    }
}

pub struct FinishTask {
    inner: Arc<Mutex<Option<SafetensorsWriter>>>,
}

impl Task for FinishTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        guard(|| {
            let writer = self
                .inner
                .lock()
                .map_err(|_| {
                    napi::Error::from(TvError::new("TV_INTERNAL", "writer lock poisoned"))
                })?
                .take()
                .ok_or_else(|| {
                    napi::Error::from(TvError::new(
                        "TV_CLOSED",
                        "the writer is finished or aborted",
                    ))
                })?;
            writer.finish().map_err(|e| TvError::from(e).into())
        })
    }

    fn resolve(&mut self, _env: Env, (): ()) -> napi::Result<()> {
        Ok(())
    }
}

pub struct WriteAtomicTask {
    path: PathBuf,
    data: Uint8Array,
}

impl Task for WriteAtomicTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        guard(|| {
            tensorvault_core::io::write_atomic(&self.path, &self.data)
                .map_err(|e| TvError::from(&e).into())
        })
    }

    fn resolve(&mut self, _env: Env, (): ()) -> napi::Result<()> {
        Ok(())
    }
}

/// Replace `path` with `data` atomically (temporary file, fsync, rename, fsync folder) on the libuv
/// pool.
#[napi(ts_return_type = "Promise<void>")]
pub fn write_file_atomic(path: String, data: Uint8Array) -> AsyncTask<WriteAtomicTask> {
    AsyncTask::new(WriteAtomicTask {
        path: PathBuf::from(path),
        data,
    })
}

#[cfg(unix)]
fn stamp_of(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{} {} {} {} {} {} {}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

#[cfg(not(unix))]
fn stamp_of(m: &std::fs::Metadata) -> String {
    // No inode or change time: the size and modification time only.
    let t = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    format!(
        "0 0 {} {} {} {} {}",
        m.len(),
        t.as_secs(),
        t.subsec_nanos(),
        t.as_secs(),
        t.subsec_nanos()
    )
}
