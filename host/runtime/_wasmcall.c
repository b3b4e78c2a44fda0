/* A fresh instance and one call into it, in C: the invoke path's sequence of
 * wasmtime C API calls (store, limits, deadline, instantiate, exports, allocate,
 * copy the event in, call the handler, copy the response out, delete the store)
 * made without a ctypes call per step. And the epoch ticker, a thread of its own
 * that never takes the GIL (`Ticker`).
 *
 * The functions are wasmtime's, from the very library wasmtime-py loaded: `setup`
 * takes their addresses (host/runtime/native.py passes them from ctypes), so this
 * module needs no wasmtime header or library at build time, and it checks that the
 * struct layouts it declares below are the ones wasmtime-py declares for that
 * library. Every check the ABI asks for (a response's length and range, an
 * allocation's range) is made here before any copy; the messages are made in
 * Python (host/runtime/instance.py), from the `Refused` this raises.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

typedef struct { uint64_t store_id; size_t private_; } wt_instance;
typedef struct { uint64_t store_id; void *private_; } wt_func;
typedef struct {
    struct { uint64_t store_id; uint32_t private1; } a;
    uint32_t private2;
} wt_memory;
typedef struct {
    uint8_t kind;
    union { wt_func func; wt_memory memory; uint8_t other[24]; } of;
} wt_extern;
typedef union {
    int32_t i32;
    int64_t i64;
    uint8_t v128[16];
    void *funcref;
} wt_val_raw;

#define EXTERN_FUNC 0
#define EXTERN_MEMORY 3

typedef void *(*store_new_t)(void *, void *, void (*)(void *));
typedef void *(*store_context_t)(void *);
typedef void (*store_limiter_t)(void *, int64_t, int64_t, int64_t, int64_t, int64_t);
typedef void (*set_epoch_deadline_t)(void *, uint64_t);
typedef void *(*pre_instantiate_t)(void *, void *, wt_instance *, void **);
typedef bool (*export_get_t)(void *, const wt_instance *, const char *, size_t, wt_extern *);
typedef void *(*call_unchecked_t)(void *, const wt_func *, wt_val_raw *, size_t, void **);
typedef uint8_t *(*memory_data_t)(const void *, const wt_memory *);
typedef size_t (*memory_data_size_t)(const void *, const wt_memory *);
typedef void (*store_delete_t)(void *);
typedef void *(*caller_context_t)(void *);
typedef void *(*context_get_data_t)(const void *);
typedef void (*engine_increment_epoch_t)(void *);

static struct {
    store_new_t store_new;
    store_context_t store_context;
    store_limiter_t store_limiter;
    set_epoch_deadline_t set_epoch_deadline;
    pre_instantiate_t pre_instantiate;
    export_get_t export_get;
    call_unchecked_t call_unchecked;
    memory_data_t memory_data;
    memory_data_size_t memory_data_size;
    store_delete_t store_delete;
    caller_context_t caller_context;
    context_get_data_t context_get_data;
    engine_increment_epoch_t engine_increment_epoch;
} api;
static bool ready = false;

/* on_failure(err, trap): the exception to raise for a failed call into the guest,
 * made in Python from the wasmtime_error_t* and wasm_trap_t* (it takes them over) */
static PyObject *on_failure = NULL;
/* an ABI rule the guest broke: (what, figures...) */
static PyObject *Refused;

/* raise Refused with `args`, a new reference it takes over (NULL: its error stands) */
static void refuse(PyObject *args) {
    if (args != NULL) {
        PyErr_SetObject(Refused, args);
        Py_DECREF(args);
    }
}

static PyObject *failed(void *err, void *trap) {
    PyObject *exc = PyObject_CallFunction(on_failure, "KK", (unsigned long long)(uintptr_t)err,
                                          (unsigned long long)(uintptr_t)trap);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* --- Instance --------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    void *store;
    void *ctx;
    wt_memory memory;
    wt_func alloc;
    wt_func handle;
} Instance;

static void instance_close_store(Instance *self) {
    if (self->store != NULL) {
        api.store_delete(self->store);
        self->store = NULL;
        self->ctx = NULL;
    }
}

static void Instance_dealloc(Instance *self) {
    instance_close_store(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static bool export_of(Instance *self, wt_instance *inst, const char *name, Py_ssize_t len,
                      uint8_t kind, wt_extern *item) {
    return api.export_get(self->ctx, inst, name, (size_t)len, item) && item->kind == kind;
}

/* Instance(engine, pre, key, memory_cap, ticks, handle_export): a new store (its
 * data the integer `key`, its memory capped, its epoch deadline `ticks` away) and
 * an instance of the InstancePre `pre` in it, with its memory, allocator and the
 * export `handle_export` looked up. Raises on_failure's exception if instantiating
 * failed (the store is deleted), Refused("export", name) if an export is missing. */
static PyObject *Instance_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    unsigned long long engine, pre, key;
    long long memory_cap;
    unsigned long long ticks;
    const char *export;
    Py_ssize_t export_len;
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "_wasmcall.setup() was not called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "KKKLKy#", &engine, &pre, &key, &memory_cap, &ticks, &export,
                          &export_len))
        return NULL;
    Instance *self = (Instance *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->store = api.store_new((void *)(uintptr_t)engine, (void *)(uintptr_t)key, NULL);
    self->ctx = api.store_context(self->store);
    api.store_limiter(self->store, memory_cap, -1, -1, -1, -1);
    api.set_epoch_deadline(self->ctx, ticks);
    wt_instance inst;
    void *trap = NULL;
    void *err;
    Py_BEGIN_ALLOW_THREADS
    err = api.pre_instantiate((void *)(uintptr_t)pre, self->ctx, &inst, &trap);
    Py_END_ALLOW_THREADS
    if (err != NULL || trap != NULL) {
        Py_DECREF(self);
        return failed(err, trap);
    }
    wt_extern item;
    const char *missing = NULL;
    if (!export_of(self, &inst, "memory", 6, EXTERN_MEMORY, &item))
        missing = "memory";
    else {
        self->memory = item.of.memory;
        if (!export_of(self, &inst, "nimbus_alloc", 12, EXTERN_FUNC, &item))
            missing = "nimbus_alloc";
        else {
            self->alloc = item.of.func;
            if (!export_of(self, &inst, export, export_len, EXTERN_FUNC, &item))
                missing = export;
            else
                self->handle = item.of.func;
        }
    }
    if (missing != NULL) {
        Py_DECREF(self);
        refuse(Py_BuildValue("(sy)", "export", missing));
        return NULL;
    }
    return (PyObject *)self;
}

static bool open_or_raise(Instance *self) {
    if (self->store == NULL) {
        PyErr_SetString(PyExc_ValueError, "the instance's store was closed");
        return false;
    }
    return true;
}

/* `func` called with `n` arguments in `vals` (its results written back there), the
 * GIL released around the guest's code; false with the failure raised */
static bool call_guest(Instance *self, const wt_func *func, wt_val_raw *vals, size_t n) {
    void *trap = NULL;
    void *err;
    Py_BEGIN_ALLOW_THREADS
    err = api.call_unchecked(self->ctx, func, vals, n, &trap);
    Py_END_ALLOW_THREADS
    if (err != NULL || trap != NULL) {
        failed(err, trap);
        return false;
    }
    return true;
}

/* the guest's allocator for `n` bytes: the pointer (0 if it had none) */
static bool call_alloc(Instance *self, uint32_t n, uint32_t *ptr) {
    wt_val_raw vals[1];
    vals[0].i64 = 0;
    vals[0].i32 = (int32_t)n;
    if (!call_guest(self, &self->alloc, vals, 1))
        return false;
    *ptr = (uint32_t)vals[0].i32;
    return true;
}

/* call(event, max_response): the ABI's steps 2-3: allocate the event in the guest,
 * copy it in, call the handler, and return a copy of the response it points at.
 * Raises on_failure's exception when a call into the guest fails, Refused(what, ...)
 * when the guest broke a rule: ("alloc", 0, len) no memory for the event,
 * ("alloc_range", ptr, size), ("too_large", len), ("response_range", ptr, len,
 * size). */
static PyObject *Instance_call(Instance *self, PyObject *args) {
    Py_buffer event;
    unsigned long long max_response;
    if (!open_or_raise(self) || !PyArg_ParseTuple(args, "y*K", &event, &max_response))
        return NULL;
    PyObject *out = NULL;
    uint32_t ptr;
    if (event.len > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "event larger than 4 GiB");
        goto done;
    }
    if (!call_alloc(self, (uint32_t)event.len, &ptr))
        goto done;
    size_t size = api.memory_data_size(self->ctx, &self->memory);
    if (ptr == 0) {
        refuse(Py_BuildValue("(sIn)", "alloc", 0u, event.len));
        goto done;
    }
    if ((uint64_t)ptr + (uint64_t)event.len > size) {
        refuse(Py_BuildValue("(sIn)", "alloc_range", ptr, (Py_ssize_t)size));
        goto done;
    }
    memcpy(api.memory_data(self->ctx, &self->memory) + ptr, event.buf, (size_t)event.len);
    wt_val_raw vals[2];
    vals[0].i64 = 0;
    vals[1].i64 = 0;
    vals[0].i32 = (int32_t)ptr;
    vals[1].i32 = (int32_t)event.len;
    if (!call_guest(self, &self->handle, vals, 2))
        goto done;
    uint64_t result = (uint64_t)vals[0].i64;
    uint64_t rptr = result >> 32, rlen = result & 0xFFFFFFFFu;
    if (rlen > max_response) {
        refuse(Py_BuildValue("(sK)", "too_large", (unsigned long long)rlen));
        goto done;
    }
    size = api.memory_data_size(self->ctx, &self->memory);
    if (rptr + rlen > size) {
        refuse(Py_BuildValue("(sKKn)", "response_range", (unsigned long long)rptr,
                                               (unsigned long long)rlen, (Py_ssize_t)size));
        goto done;
    }
    out = PyBytes_FromStringAndSize(
        (const char *)api.memory_data(self->ctx, &self->memory) + rptr, (Py_ssize_t)rlen);
done:
    PyBuffer_Release(&event);
    return out;
}

/* alloc(n): the guest's allocator called for `n` bytes (host calls that hand the
 * guest data); the pointer, 0 when it had no memory. */
static PyObject *Instance_alloc(Instance *self, PyObject *arg) {
    unsigned long n = PyLong_AsUnsignedLong(arg);
    if (n == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (n > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "allocation larger than 4 GiB");
        return NULL;
    }
    uint32_t ptr;
    if (!open_or_raise(self) || !call_alloc(self, (uint32_t)n, &ptr))
        return NULL;
    return PyLong_FromUnsignedLong(ptr);
}

/* memory_view(): (base address, size) of the guest's memory now */
static PyObject *Instance_memory_view(Instance *self, PyObject *unused) {
    if (!open_or_raise(self))
        return NULL;
    uint8_t *base = api.memory_data(self->ctx, &self->memory);
    size_t size = api.memory_data_size(self->ctx, &self->memory);
    return Py_BuildValue("(Kn)", (unsigned long long)(uintptr_t)base, (Py_ssize_t)size);
}

/* memory_size(): the guest's memory in bytes now (0 once closed) */
static PyObject *Instance_memory_size(Instance *self, PyObject *unused) {
    if (self->store == NULL)
        return PyLong_FromLong(0);
    return PyLong_FromSize_t(api.memory_data_size(self->ctx, &self->memory));
}

/* close(): delete the store (its instance and memory go with it); idempotent */
static PyObject *Instance_close(Instance *self, PyObject *unused) {
    instance_close_store(self);
    Py_RETURN_NONE;
}

static PyObject *Instance_get_ctx(Instance *self, void *closure) {
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)self->ctx);
}

static PyMethodDef Instance_methods[] = {
    {"call", (PyCFunction)Instance_call, METH_VARARGS, "Run an event through the handler."},
    {"alloc", (PyCFunction)Instance_alloc, METH_O, "The guest's allocator for n bytes."},
    {"memory_view", (PyCFunction)Instance_memory_view, METH_NOARGS, "(base, size)."},
    {"memory_size", (PyCFunction)Instance_memory_size, METH_NOARGS, "Memory bytes now."},
    {"close", (PyCFunction)Instance_close, METH_NOARGS, "Delete the store."},
    {NULL}};

static PyGetSetDef Instance_getset[] = {
    {"ctx", (getter)Instance_get_ctx, NULL, "The store's context (an integer).", NULL},
    {NULL}};

static PyTypeObject InstanceType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "host.runtime._wasmcall.Instance",
    .tp_doc = "A store with one fresh instance of a function's module in it.",
    .tp_basicsize = sizeof(Instance),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Instance_new,
    .tp_dealloc = (destructor)Instance_dealloc,
    .tp_methods = Instance_methods,
    .tp_getset = Instance_getset,
};

/* --- Ticker ------------------------------------------------------------------ */

/* The engines' epoch ticker: a thread that advances every engine it was given to
 * `elapsed / period` ticks since it started (catching up on every tick a late
 * wake-up missed), without ever taking the GIL. A Python thread doing this asked
 * for the GIL 200 times a second, and each time the event loop, busy serving, was
 * made to hand it over (host/runtime/engine.py). */

#define TICKER_ENGINES 8

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running;
    bool stop;
    double period;
    int nice;
    double start;
    long long epoch; /* ticks given so far: written by the thread, read atomically */
    void *engines[TICKER_ENGINES];
    PyObject *owners[TICKER_ENGINES]; /* each engine's Python object, kept alive */
    int n_engines;
} Ticker;

static double monotonic_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *ticker_run(void *arg) {
    Ticker *self = (Ticker *)arg;
#ifdef __linux__
    pthread_setname_np(pthread_self(), "nimbus-epoch"); /* as `top -H` and py-spy show it */
#endif
    /* deadlines depend on this thread: ask for a higher priority (needs privileges) */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), self->nice);
    pthread_mutex_lock(&self->mu);
    while (!self->stop) {
        double next = self->start + (double)(self->epoch + 1) * self->period;
        struct timespec until;
        until.tv_sec = (time_t)next;
        until.tv_nsec = (long)((next - (double)until.tv_sec) * 1e9);
        if (until.tv_nsec > 999999999)
            until.tv_nsec = 999999999;
        pthread_cond_timedwait(&self->cv, &self->mu, &until);
        if (self->stop)
            break;
        long long due = (long long)((monotonic_now() - self->start) / self->period);
        while (self->epoch < due) {
            for (int i = 0; i < self->n_engines; i++)
                api.engine_increment_epoch(self->engines[i]);
            __atomic_store_n(&self->epoch, self->epoch + 1, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

/* Ticker(period_s, nice): the thread started, ticking no engine yet (`add`) */
static PyObject *Ticker_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    double period;
    int nice;
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "_wasmcall.setup() was not called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "di", &period, &nice))
        return NULL;
    if (!(period > 0)) {
        PyErr_SetString(PyExc_ValueError, "Ticker: the period must be over 0 s");
        return NULL;
    }
    Ticker *self = (Ticker *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&self->mu, NULL);
    self->period = period;
    self->nice = nice;
    self->start = monotonic_now();
    int err = pthread_create(&self->thread, NULL, ticker_run, self);
    if (err != 0) {
        Py_DECREF(self);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->running = true;
    return (PyObject *)self;
}

static void ticker_stop(Ticker *self) {
    if (!self->running)
        return;
    pthread_mutex_lock(&self->mu);
    self->stop = true;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    /* with the GIL held (this may run inside the cyclic GC): the thread never takes
     * it, and ends as soon as it wakes */
    pthread_join(self->thread, NULL);
    self->running = false;
}

/* the engines' owners let go: only once the thread is stopped */
static int Ticker_clear(Ticker *self) {
    ticker_stop(self);
    for (int i = 0; i < self->n_engines; i++)
        Py_CLEAR(self->owners[i]);
    self->n_engines = 0;
    return 0;
}

static int Ticker_traverse(Ticker *self, visitproc visit, void *arg) {
    for (int i = 0; i < self->n_engines; i++)
        Py_VISIT(self->owners[i]);
    return 0;
}

static void Ticker_dealloc(Ticker *self) {
    PyObject_GC_UnTrack(self);
    Ticker_clear(self);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->mu);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* add(address, owner): tick the engine at `address` too; `owner`, the object that
 * frees it, is kept alive as long as the ticker (so no engine goes while ticked) */
static PyObject *Ticker_add(Ticker *self, PyObject *args) {
    PyObject *address, *owner;
    if (!PyArg_ParseTuple(args, "OO", &address, &owner))
        return NULL;
    void *engine = PyLong_AsVoidPtr(address);
    if (engine == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "Ticker.add: a null engine");
        return NULL;
    }
    pthread_mutex_lock(&self->mu);
    bool full = self->n_engines == TICKER_ENGINES || !self->running;
    if (!full) {
        self->owners[self->n_engines] = Py_NewRef(owner);
        self->engines[self->n_engines++] = engine;
    }
    pthread_mutex_unlock(&self->mu);
    if (full) {
        if (self->running)
            PyErr_Format(PyExc_ValueError, "Ticker.add: at most %d engines", TICKER_ENGINES);
        else
            PyErr_SetString(PyExc_ValueError, "Ticker.add: the ticker is stopped");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Ticker_stop(Ticker *self, PyObject *unused) {
    Ticker_clear(self);
    Py_RETURN_NONE;
}

static PyObject *Ticker_get_epoch(Ticker *self, void *closure) {
    return PyLong_FromLongLong(__atomic_load_n(&self->epoch, __ATOMIC_ACQUIRE));
}

static PyObject *Ticker_get_start(Ticker *self, void *closure) {
    return PyFloat_FromDouble(self->start);
}

static PyMethodDef Ticker_methods[] = {
    {"add", (PyCFunction)Ticker_add, METH_VARARGS, "Tick this engine (address, owner) too."},
    {"stop", (PyCFunction)Ticker_stop, METH_NOARGS, "Stop the thread and wait for it."},
    {NULL}};

static PyGetSetDef Ticker_getset[] = {
    {"epoch", (getter)Ticker_get_epoch, NULL, "Ticks given so far.", NULL},
    {"start", (getter)Ticker_get_start, NULL, "When it started (time.monotonic()).", NULL},
    {NULL}};

static PyTypeObject TickerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "host.runtime._wasmcall.Ticker",
    .tp_basicsize = sizeof(Ticker),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_free = PyObject_GC_Del,
    .tp_traverse = (traverseproc)Ticker_traverse,
    .tp_clear = (inquiry)Ticker_clear,
    .tp_doc = "The engines' epoch ticker, a thread that never takes the GIL.",
    .tp_new = Ticker_new,
    .tp_dealloc = (destructor)Ticker_dealloc,
    .tp_methods = Ticker_methods,
    .tp_getset = Ticker_getset,
};

/* --- module ------------------------------------------------------------------ */

/* caller_key(caller): the integer a host call's caller's store was created with */
static PyObject *caller_key(PyObject *module, PyObject *arg) {
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "_wasmcall.setup() was not called");
        return NULL;
    }
    void *caller = PyLong_AsVoidPtr(arg);
    if (caller == NULL && PyErr_Occurred())
        return NULL;
    void *data = api.context_get_data(api.caller_context(caller));
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)data);
}

/* setup(addresses, sizes, on_failure): the wasmtime functions' addresses, in the
 * order of `api`'s fields; wasmtime-py's sizes of (instance, func, memory, extern,
 * val_raw), which must be this module's; the maker of a failed call's exception. */
static PyObject *setup(PyObject *module, PyObject *args) {
    PyObject *addresses, *sizes, *failure;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyTuple_Type, &addresses, &PyTuple_Type, &sizes,
                          &failure))
        return NULL;
    if (!PyCallable_Check(failure)) {
        PyErr_SetString(PyExc_TypeError, "setup: on_failure must be callable");
        return NULL;
    }
    const Py_ssize_t n = sizeof(api) / sizeof(void *);
    if (PyTuple_GET_SIZE(addresses) != n) {
        PyErr_Format(PyExc_ValueError, "setup: %zd function addresses, expected %zd",
                     PyTuple_GET_SIZE(addresses), n);
        return NULL;
    }
    const size_t ours[] = {sizeof(wt_instance), sizeof(wt_func), sizeof(wt_memory),
                           sizeof(wt_extern), sizeof(wt_val_raw)};
    const Py_ssize_t n_sizes = sizeof(ours) / sizeof(ours[0]);
    if (PyTuple_GET_SIZE(sizes) != n_sizes) {
        PyErr_Format(PyExc_ValueError, "setup: %zd sizes, expected %zd", PyTuple_GET_SIZE(sizes),
                     n_sizes);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n_sizes; i++) {
        size_t theirs = PyLong_AsSize_t(PyTuple_GET_ITEM(sizes, i));
        if (theirs == (size_t)-1 && PyErr_Occurred())
            return NULL;
        if (theirs != ours[i]) {
            PyErr_Format(PyExc_RuntimeError,
                         "wasmtime's struct %zd is %zu bytes; this module was written for %zu "
                         "(a wasmtime release with another C API)",
                         i, theirs, ours[i]);
            return NULL;
        }
    }
    void **slots = (void **)&api;
    for (Py_ssize_t i = 0; i < n; i++) {
        void *address = PyLong_AsVoidPtr(PyTuple_GET_ITEM(addresses, i));
        if (address == NULL) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "setup: function %zd has no address", i);
            return NULL;
        }
        slots[i] = address;
    }
    Py_XSETREF(on_failure, Py_NewRef(failure));
    ready = true;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"setup", setup, METH_VARARGS, "Give the module wasmtime's functions."},
    {"caller_key", caller_key, METH_O, "The integer of a host call's caller's store."},
    {NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_wasmcall",
    "A fresh wasmtime instance and one call into it, without a ctypes call per step.", -1,
    module_methods};

PyMODINIT_FUNC PyInit__wasmcall(void) {
    if (PyType_Ready(&InstanceType) < 0 || PyType_Ready(&TickerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Refused = PyErr_NewException("_wasmcall.Refused", NULL, NULL);
    if (Refused == NULL || PyModule_AddObjectRef(m, "Refused", Refused) < 0 ||
        PyModule_AddObjectRef(m, "Instance", (PyObject *)&InstanceType) < 0 ||
        PyModule_AddObjectRef(m, "Ticker", (PyObject *)&TickerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
