//! The zero-copy hit path for CPython: a hit becomes a read-only
//! `memoryview` in one call, built here with CPython's own functions.
//!
//! The library does not link libpython (the wheel is py3-none and the
//! same library serves C and Go): the Python package hands the addresses
//! of a few stable-ABI functions over once, at import, with
//! [`cache_py_init`], which makes one heap type (`PyType_FromSpec`) whose
//! instances hold one value: the same shared hold on the cache's own entry
//! that a `cache_value` holds (`Group::get_cached_shared`: a `Bytes` over
//! the entry, which counts its holders), without the handle table. Its
//! `bf_getbuffer` exports the bytes read-only (`PyBuffer_FillInfo` with
//! readonly=1 refuses `PyBUF_WRITABLE`), its `tp_dealloc` drops the hold.
//! [`cache_lookup_view`] wraps a hit in one of those and returns
//! `PyMemoryView_FromObject` of it; the memoryview (and every slice of it)
//! keeps the holder alive, and the last one to go frees it.
//! [`cache_py_value_view`] makes the same view of a value handle the caller
//! owns (a load's), taking its hold over.
//!
//! CPython ABI assumptions, all of them of non-free-threaded CPython
//! 3.9-3.13 (the package checks the build before calling cache_py_init,
//! and falls back to its ctypes views elsewhere):
//! - every call here runs with the GIL held (through `ctypes.PyDLL`, or
//!   from CPython itself for the type's slots);
//! - an object starts with a header of `object.__basicsize__` bytes (the
//!   caller passes it); our fields follow it, at a pointer-aligned offset;
//! - `PyType_Spec` / `PyType_Slot` have the stable-ABI layout, and the slot
//!   ids `Py_bf_getbuffer` = 1 and `Py_tp_dealloc` = 52 (stable-ABI
//!   numbers, never renumbered; buffer slots are honoured from 3.9 on,
//!   which cache_py_init checks with `PyType_GetSlot`);
//! - `Py_buffer` is only ever filled by `PyBuffer_FillInfo`, never read or
//!   written here;
//! - an instance of a heap type holds a reference to its type, dropped by
//!   its dealloc (since 3.8), and `PyType_GenericAlloc` returns zeroed
//!   memory (so an instance made by anyone else holds nothing).

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::mem::{align_of, size_of, MaybeUninit};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;

use super::boundary::{guard, Fallback};
use super::cache::cache;
use super::lookup::lookup_shared;
use super::status::*;
use super::value::{cache_value, take};

/// The CPython functions (and `Py_None`) the zero-copy views are built
/// with, as a binding hands them to cache_py_init: addresses of the
/// interpreter's own stable-ABI functions (from Python,
/// `ctypes.cast(ctypes.pythonapi.<name>, c_void_p)`). `PyObject *` is
/// `void *` here.
#[repr(C)]
pub struct cache_py_api {
    /// `sizeof(struct cache_py_api)`, so the struct can grow.
    pub size: usize,
    /// The size of an object header: `object.__basicsize__` (16 on 64-bit
    /// CPython).
    pub object_size: isize,
    /// `Py_TPFLAGS_*` for the type: at least `Py_TPFLAGS_DEFAULT`; from 3.10
    /// on also `Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE`;
    /// no other bit (cache_py_init refuses them).
    pub type_flags: c_uint,
    /// `Py_None`.
    pub none: *mut c_void,
    /// `PyType_FromSpec`.
    pub type_from_spec: Option<unsafe extern "C" fn(spec: *mut c_void) -> *mut c_void>,
    /// `PyType_GetSlot`.
    pub type_get_slot: Option<unsafe extern "C" fn(ty: *mut c_void, slot: c_int) -> *mut c_void>,
    /// `PyType_GenericAlloc`.
    pub type_generic_alloc: Option<unsafe extern "C" fn(ty: *mut c_void, nitems: isize) -> *mut c_void>,
    /// `PyObject_Free`.
    pub object_free: Option<unsafe extern "C" fn(p: *mut c_void)>,
    /// `PyBuffer_FillInfo`.
    pub buffer_fill_info: Option<
        unsafe extern "C" fn(
            view: *mut c_void,
            obj: *mut c_void,
            buf: *mut c_void,
            len: isize,
            readonly: c_int,
            flags: c_int,
        ) -> c_int,
    >,
    /// `PyMemoryView_FromObject`.
    pub memoryview_from_object: Option<unsafe extern "C" fn(obj: *mut c_void) -> *mut c_void>,
    /// `Py_IncRef`.
    pub incref: Option<unsafe extern "C" fn(obj: *mut c_void)>,
    /// `Py_DecRef`.
    pub decref: Option<unsafe extern "C" fn(obj: *mut c_void)>,
    /// `PyErr_Clear`.
    pub err_clear: Option<unsafe extern "C" fn()>,
    /// `PyCFunction_NewEx`.
    pub cfunction_new: Option<
        unsafe extern "C" fn(method_def: *mut c_void, self_: *mut c_void, module: *mut c_void) -> *mut c_void,
    >,
    /// `PyLong_AsVoidPtr`.
    pub long_as_void_ptr: Option<unsafe extern "C" fn(obj: *mut c_void) -> *mut c_void>,
    /// `PyUnicode_AsUTF8AndSize`.
    pub unicode_as_utf8_and_size:
        Option<unsafe extern "C" fn(obj: *mut c_void, size: *mut isize) -> *const u8>,
}

type Fn1 = unsafe extern "C" fn(*mut c_void);
type FillInfo = unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void, isize, c_int, c_int) -> c_int;

/// cache_py_api checked, plus the type made from it.
struct Api {
    offset: usize,
    none: usize,
    ty: usize,
    alloc: unsafe extern "C" fn(*mut c_void, isize) -> *mut c_void,
    free: Fn1,
    fill: FillInfo,
    memoryview: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    incref: Fn1,
    decref: Fn1,
    err_clear: unsafe extern "C" fn(),
    as_ptr: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    as_utf8: unsafe extern "C" fn(*mut c_void, *mut isize) -> *const u8,
    /// The builtin function of lookup_fast (a reference kept forever).
    func: usize,
}

static API: OnceLock<Api> = OnceLock::new();

/// Views' holders alive now (see cache_py_live_views).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// What an instance holds after its header. `live` is 0 in an instance
/// nobody filled (zeroed by the allocator), 1 once `bytes` is written.
#[repr(C)]
struct Holder {
    live: usize,
    bytes: MaybeUninit<Bytes>,
}

#[repr(C)]
struct TypeSlot {
    slot: c_int,
    pfunc: *mut c_void,
}

#[repr(C)]
struct TypeSpec {
    name: *const c_char,
    basicsize: c_int,
    itemsize: c_int,
    flags: c_uint,
    slots: *mut TypeSlot,
}

/// The `Py_TPFLAGS_*` the type may have: `DEFAULT` (`HAVE_VERSION_TAG`,
/// 1 << 18), `DISALLOW_INSTANTIATION` (1 << 7), `IMMUTABLETYPE` (1 << 8).
/// Anything else (`BASETYPE`, `HAVE_GC`, ...) would not match the
/// instance layout and dealloc written here.
const ALLOWED_TYPE_FLAGS: c_uint = 1 << 18 | 1 << 7 | 1 << 8;

const PY_BF_GETBUFFER: c_int = 1;
const PY_TP_DEALLOC: c_int = 52;
/// `tp_name` of the type; not copied by 3.9-3.11, hence static.
const TYPE_NAME: &std::ffi::CStr = c"groupcache._ValueHolder";

/// # Safety
/// `obj` is an instance of the type cache_py_init made (API is set).
unsafe fn holder(api: &Api, obj: *mut c_void) -> *mut Holder {
    // SAFETY: the instance is object_size + size_of::<Holder>() bytes
    // (the spec's basicsize), and offset is the header size.
    unsafe { (obj as *mut u8).add(api.offset) as *mut Holder }
}

/// The type's bf_getbuffer: the held bytes, read-only.
unsafe extern "C" fn get_buffer(obj: *mut c_void, view: *mut c_void, flags: c_int) -> c_int {
    let Some(api) = API.get() else { return -1 };
    static EMPTY: u8 = 0;
    // SAFETY: CPython calls this slot only with an instance of our type
    // and a Py_buffer to fill, holding the GIL. A holder nobody filled
    // exports an empty buffer. PyBuffer_FillInfo with readonly=1 fails
    // (BufferError) for a writable request, and takes a reference to obj
    // for view->obj, which keeps the bytes alive until the buffer is
    // released.
    unsafe {
        let h = holder(api, obj);
        let (data, len) = if (*h).live == 1 {
            let b = (*h).bytes.assume_init_ref();
            (b.as_ptr(), b.len() as isize)
        } else {
            (&EMPTY as *const u8, 0)
        };
        (api.fill)(view, obj, data as *mut c_void, len, 1, flags)
    }
}

/// The type's tp_dealloc: drops the hold on the value, frees the object
/// and drops its reference to the type.
unsafe extern "C" fn dealloc(obj: *mut c_void) {
    let Some(api) = API.get() else { return };
    // SAFETY: CPython calls this once, holding the GIL, for an instance of
    // our type whose count reached zero: nothing else uses it. Its bytes
    // were written iff live == 1. It was allocated by PyType_GenericAlloc,
    // whose memory PyObject_Free releases (the type has no GC), and holds
    // a reference to its heap type.
    unsafe {
        let h = holder(api, obj);
        if (*h).live == 1 {
            (*h).live = 0;
            (*h).bytes.assume_init_drop();
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
        (api.free)(obj);
        (api.decref)(api.ty as *mut c_void);
    }
}

/// Makes the zero-copy views of cache_lookup_view possible in this
/// process: takes the CPython functions in `*api` (see cache_py_api; the
/// struct is read during the call only) and makes the type that holds a
/// view's value. For the Python binding, which calls it once at import
/// with the GIL held (through `ctypes.PyDLL`); other callers never need
/// it. Only for a non-free-threaded CPython 3.9 or later with the GIL held,
/// and for the interpreter whose functions are passed (not a
/// subinterpreter).
///
/// If `lookup_fn` is not NULL it receives, on CACHE_OK, a borrowed
/// reference (valid for the life of the process) to a builtin function
/// `lookup_view(cache_handle: int, key: str)`: cache_lookup_view called
/// directly by CPython (a METH_FASTCALL builtin, much cheaper than a
/// ctypes call), with the key taken as UTF-8; it returns None for a miss
/// and for any argument it cannot take (a key that is not a str or has
/// lone surrogates, a handle that is not an int), never raising.
///
/// Returns CACHE_OK, also when already initialized (the first call's
/// functions stay); CACHE_INVALID_ARGUMENT for NULL `api`, a `size`
/// smaller than this library's struct, a NULL function or `none`, or an
/// `object_size` that is not a positive multiple of the pointer size,
/// `type_flags` with a bit other than `Py_TPFLAGS_DEFAULT`,
/// `Py_TPFLAGS_DISALLOW_INSTANTIATION` and `Py_TPFLAGS_IMMUTABLETYPE`, and
/// also when CPython refuses the type (`PyType_FromSpec` failed; its
/// Python exception is cleared) or ignores its buffer slot (CPython
/// before 3.9), or the builtin cannot be made; cache_last_error says
/// which. Never blocks.
///
/// # Safety
/// `api` is NULL or points to a readable cache_py_api whose pointers are
/// what it names, of the running interpreter; `lookup_fn` is NULL or
/// writable; the caller holds the GIL.
#[no_mangle]
pub unsafe extern "C" fn cache_py_init(
    api: *const cache_py_api,
    lookup_fn: *mut *mut c_void,
) -> cache_status {
    guard(|| {
        if let Some(api) = API.get() {
            if !lookup_fn.is_null() {
                // SAFETY: writable (the caller's promise).
                unsafe { *lookup_fn = api.func as *mut c_void };
            }
            return CACHE_OK;
        }
        if api.is_null() {
            return fail(CACHE_INVALID_ARGUMENT, "`api` is NULL");
        }
        // SAFETY: non-NULL and readable (the caller's promise); the size
        // field comes first, so it is read before anything it vouches for.
        let size = unsafe { std::ptr::addr_of!((*api).size).read_unaligned() };
        if size < size_of::<cache_py_api>() {
            return fail(
                CACHE_INVALID_ARGUMENT,
                format!(
                    "cache_py_api.size is {size}, this library's is {}",
                    size_of::<cache_py_api>()
                ),
            );
        }
        // SAFETY: readable for size_of::<cache_py_api>() bytes (checked).
        let a = unsafe { &*api };
        let (
            Some(from_spec),
            Some(get_slot),
            Some(alloc),
            Some(free),
            Some(fill),
            Some(memoryview),
            Some(incref),
            Some(decref),
            Some(err_clear),
            Some(cfunction_new),
            Some(as_ptr),
            Some(as_utf8),
        ) = (
            a.type_from_spec,
            a.type_get_slot,
            a.type_generic_alloc,
            a.object_free,
            a.buffer_fill_info,
            a.memoryview_from_object,
            a.incref,
            a.decref,
            a.err_clear,
            a.cfunction_new,
            a.long_as_void_ptr,
            a.unicode_as_utf8_and_size,
        )
        else {
            return fail(CACHE_INVALID_ARGUMENT, "a cache_py_api function is NULL");
        };
        if a.none.is_null() {
            return fail(CACHE_INVALID_ARGUMENT, "cache_py_api.none is NULL");
        }
        if a.type_flags & !ALLOWED_TYPE_FLAGS != 0 {
            return fail(
                CACHE_INVALID_ARGUMENT,
                format!(
                    "cache_py_api.type_flags {:#x} has bits beyond DEFAULT | DISALLOW_INSTANTIATION | IMMUTABLETYPE",
                    a.type_flags
                ),
            );
        }
        let ptr = size_of::<usize>() as isize;
        if a.object_size <= 0 || a.object_size % ptr != 0 || a.object_size > 4096 {
            return fail(
                CACHE_INVALID_ARGUMENT,
                format!("cache_py_api.object_size {} is not a header size", a.object_size),
            );
        }
        debug_assert!(align_of::<Holder>() <= size_of::<usize>());
        let mut slots = [
            TypeSlot {
                slot: PY_BF_GETBUFFER,
                pfunc: get_buffer as *mut c_void,
            },
            TypeSlot {
                slot: PY_TP_DEALLOC,
                pfunc: dealloc as *mut c_void,
            },
            TypeSlot {
                slot: 0,
                pfunc: std::ptr::null_mut(),
            },
        ];
        let mut spec = TypeSpec {
            name: TYPE_NAME.as_ptr(),
            basicsize: (a.object_size as usize + size_of::<Holder>()) as c_int,
            itemsize: 0,
            flags: a.type_flags,
            slots: slots.as_mut_ptr(),
        };
        // SAFETY: the caller's PyType_FromSpec, with the GIL held, given a
        // PyType_Spec of the stable-ABI layout whose name is static and
        // whose slots end with a zero slot; it copies the slots.
        let ty = unsafe { from_spec(&mut spec as *mut TypeSpec as *mut c_void) };
        if ty.is_null() {
            // SAFETY: the caller's PyErr_Clear, GIL held.
            unsafe { err_clear() };
            return fail(CACHE_INVALID_ARGUMENT, "PyType_FromSpec failed for the view type");
        }
        // SAFETY: the caller's PyType_GetSlot on the heap type just made.
        let honoured = unsafe { get_slot(ty, PY_BF_GETBUFFER) } == get_buffer as *mut c_void;
        if !honoured {
            // SAFETY: drops the only reference to the type (no instance
            // exists), GIL held; and clears what GetSlot may have raised.
            unsafe {
                err_clear();
                decref(ty);
            }
            return fail(
                CACHE_INVALID_ARGUMENT,
                "this Python ignores buffer slots of PyType_FromSpec (it needs 3.9 or later)",
            );
        }
        // SAFETY: the caller's PyCFunction_NewEx, GIL held, with a method
        // definition that lives forever (CPython keeps a pointer to it) and
        // no self or module: a new reference, kept for good (or NULL).
        let func = unsafe { cfunction_new(&LOOKUP_DEF as *const MethodDef as *mut c_void, null(), null()) };
        if func.is_null() {
            // SAFETY: as above: clears the exception, drops the type.
            unsafe {
                err_clear();
                decref(ty);
            }
            return fail(CACHE_INVALID_ARGUMENT, "PyCFunction_NewEx failed");
        }
        let _ = API.set(Api {
            offset: a.object_size as usize,
            none: a.none as usize,
            ty: ty as usize,
            alloc,
            free,
            fill,
            memoryview,
            incref,
            decref,
            err_clear,
            as_ptr,
            as_utf8,
            func: func as usize,
        });
        if !lookup_fn.is_null() {
            // SAFETY: writable (the caller's promise).
            unsafe { *lookup_fn = func };
        }
        CACHE_OK
    })
}

fn null() -> *mut c_void {
    std::ptr::null_mut()
}

/// `PyMethodDef`, stable-ABI layout.
#[repr(C)]
struct MethodDef {
    name: *const c_char,
    meth: *mut c_void,
    flags: c_int,
    doc: *const c_char,
}

// SAFETY: immutable, and only read by CPython (under the GIL).
unsafe impl Sync for MethodDef {}

/// `METH_FASTCALL`: `f(self, args, nargs)` (0x80 since 3.7, stable ABI
/// since 3.10).
const METH_FASTCALL: c_int = 0x0080;

static LOOKUP_DEF: MethodDef = MethodDef {
    name: c"lookup_view".as_ptr(),
    meth: lookup_fast as *mut c_void,
    flags: METH_FASTCALL,
    doc: c"lookup_view(cache_handle: int, key: str) -> memoryview | None\n\n\
The hit path of groupcache's get_buffer (cache_lookup_view with a str key \
as UTF-8). None on a miss and for anything it cannot take: a key that is \
not a str or has lone surrogates, a handle that is not an int."
        .as_ptr(),
};

/// The builtin function `lookup_view(cache_handle, key)`: cache_lookup_view
/// called by CPython's vectorcall, with a str key (taken as UTF-8 without
/// a copy), skipping the cost of a ctypes call. Anything it cannot take
/// (not two arguments, a handle that is not an int, a key that is not a
/// str or does not encode as UTF-8) is None, like a miss, with no
/// exception left set: the caller's slow path sorts those out.
unsafe extern "C" fn lookup_fast(_self: *mut c_void, args: *const *mut c_void, nargs: isize) -> *mut c_void {
    let Some(api) = API.get() else { return null() };
    guard(|| {
        if nargs != 2 {
            return PyRet(none(api));
        }
        // SAFETY: CPython passes nargs (2) valid object pointers, GIL held;
        // PyLong_AsVoidPtr and PyUnicode_AsUTF8AndSize take any object (a
        // wrong type is an exception, cleared here), and the UTF-8 stays
        // valid while the str lives, which the caller's reference ensures
        // for the whole call.
        unsafe {
            let c = (api.as_ptr)(*args);
            if c.is_null() {
                // Not an int (or 0): its exception, if any, is cleared
                // before any other CPython call.
                (api.err_clear)();
                return PyRet(none(api));
            }
            let mut len = 0isize;
            let key = (api.as_utf8)(*args.add(1), &mut len);
            if key.is_null() || len < 0 {
                (api.err_clear)();
                return PyRet(none(api));
            }
            PyRet(lookup(
                api,
                c as *mut cache,
                std::slice::from_raw_parts(key, len as usize),
            ))
        }
    })
    .0
}

/// A new memoryview of the value of `key` on a hit, else a new reference
/// to None.
///
/// # Safety
/// The GIL is held.
unsafe fn lookup(api: &Api, c: *mut cache, key: &[u8]) -> *mut c_void {
    match lookup_shared(c, key) {
        // SAFETY: the GIL is held (the caller's promise).
        Some(bytes) => unsafe { view_of(api, bytes) },
        None => none(api),
    }
}

/// A `PyObject *` result: never NULL once initialized (ctypes would crash
/// on NULL with a `py_object` result type, see lookup.rs).
struct PyRet(*mut c_void);

impl Fallback for PyRet {
    fn on_panic() -> Self {
        API.get()
            .map_or(PyRet(std::ptr::null_mut()), |api| PyRet(none(api)))
    }
}

/// A new reference to None.
fn none(api: &Api) -> *mut c_void {
    let n = api.none as *mut c_void;
    // SAFETY: Py_IncRef on Py_None, with the GIL held (every caller's).
    unsafe { (api.incref)(n) };
    n
}

/// The zero-copy hit path for Python: looks `key` up in this node's cache
/// only, like cache_lookup_value (never loads, never calls the getter or a
/// peer, never blocks, never sets cache_last_error), and on a hit returns
/// a new reference to a read-only `memoryview` (format "B") of the cache's
/// own copy of the value: no copy, whatever the size. The view, its
/// slices and anything that took a buffer from it keep the bytes alive and
/// unchanged after the key is evicted, removed or set again and after the
/// cache is freed (it holds the value as a cache_value does); the last of
/// them to go releases it. A writable buffer of it is refused
/// (BufferError).
///
/// Returns a new reference to `None` on a miss (which may be a key being
/// written at that instant: follow up with cache_get), a freed cache, a
/// key over 8 KiB, NULL `c`, or when CPython fails to allocate (its
/// exception is cleared). Returns NULL only before cache_py_init
/// succeeded.
///
/// # Safety
/// Called with the GIL held, after cache_py_init succeeded, from the
/// interpreter it was given; `key` points to `key_len` readable bytes (or
/// is NULL with `key_len` 0).
#[no_mangle]
pub unsafe extern "C" fn cache_lookup_view(c: *mut cache, key: *const u8, key_len: usize) -> *mut c_void {
    let Some(api) = API.get() else {
        return std::ptr::null_mut();
    };
    guard(|| {
        // SAFETY: the caller's promise on key.
        let Some(key) = (unsafe { super::lookup::key_arg(key, key_len) }) else {
            return PyRet(none(api));
        };
        // SAFETY: the GIL is held (the caller's promise).
        PyRet(unsafe { lookup(api, c, key) })
    })
    .0
}

/// The zero-copy view of a value the caller owns (from cache_get,
/// cache_lookup_value, ...), for Python: takes `v` over (it is freed, as by
/// cache_value_free, in every case) and returns a new reference to a
/// read-only `memoryview` (format "B") of its bytes, without a copy, held
/// like cache_lookup_view's views: the last of the view, its slices and
/// whatever took a buffer from it releases the value. For the loads of the
/// Python binding's get_buffer (a miss, then cache_get), whose views are
/// then the same as a hit's.
///
/// Returns a new reference to `None` for NULL `v` or a value already freed,
/// and when CPython fails to allocate (its exception is cleared; the value
/// is freed). Returns NULL only before cache_py_init succeeded (`v` is
/// then left alone). Never blocks.
///
/// # Safety
/// Called with the GIL held, after cache_py_init succeeded, from the
/// interpreter it was given.
#[no_mangle]
pub unsafe extern "C" fn cache_py_value_view(v: *mut cache_value) -> *mut c_void {
    let Some(api) = API.get() else {
        return std::ptr::null_mut();
    };
    guard(|| match take(v) {
        // SAFETY: the GIL is held (the caller's promise).
        Some(bytes) => PyRet(unsafe { view_of(api, bytes) }),
        None => PyRet(none(api)),
    })
    .0
}

/// A new memoryview of `bytes`, or a new reference to None if CPython
/// fails to allocate.
///
/// # Safety
/// The GIL is held.
unsafe fn view_of(api: &Api, bytes: Bytes) -> *mut c_void {
    // SAFETY: PyType_GenericAlloc of our type (a new reference, zeroed, or
    // NULL with an exception set), GIL held.
    let obj = unsafe { (api.alloc)(api.ty as *mut c_void, 0) };
    if obj.is_null() {
        // SAFETY: clears the MemoryError, GIL held.
        unsafe { (api.err_clear)() };
        return none(api);
    }
    // SAFETY: a fresh instance of our type, zeroed, which only we can see:
    // its holder is written before anything reads it.
    unsafe {
        let h = holder(api, obj);
        (*h).bytes.write(bytes);
        (*h).live = 1;
    }
    LIVE.fetch_add(1, Ordering::Relaxed);
    // SAFETY: PyMemoryView_FromObject calls our get_buffer (which takes
    // its own reference to obj), then we drop ours: the view is the
    // holder's only owner, or, if it failed (NULL, exception set), the
    // holder is deallocated here and its bytes released.
    unsafe {
        let view = (api.memoryview)(obj);
        (api.decref)(obj);
        if view.is_null() {
            (api.err_clear)();
            return none(api);
        }
        view
    }
}

/// How many values the views of cache_lookup_view hold now (each
/// memoryview and its slices share one): a leak check for bindings and
/// tests. Call it with the GIL held for an exact count. Never blocks.
#[no_mangle]
pub extern "C" fn cache_py_live_views() -> usize {
    LIVE.load(Ordering::Relaxed)
}
