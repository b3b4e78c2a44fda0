/* The shared Python runtime's core module: CPython 3.11 for WASI, linked statically
 * with this file, speaking the core guest ABI (guest_sdk/ABI.md) like a Zig function.
 *
 * The host builds it once per machine (host/toolchain/python_runtime.py): it links
 * this file with libpython, runs `nimbus_python_init` with the standard library and
 * the SDK mounted, and writes the initialised memory back into the module as its data
 * (a snapshot). Every invocation then runs in a fresh instance of that snapshot:
 *
 *   nimbus_handle(ptr, len)          [u32 little-endian n][n bytes: the function's code
 *                                    bundle][the event]  ->  (ptr << 32) | len of the
 *                                    msgpack response (nimbus._runtime.run)
 *   nimbus_python_compile(ptr, len)  msgpack sources -> msgpack [error, bundle]
 *   nimbus_python_warm()             the SDK's warm-up invocation (no function's code)
 *
 * Python reaches the host through the built-in module `_nimbus` (log, now,
 * random_bytes, call), whose functions call the `nimbus` imports of the core ABI.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HOST(n) __attribute__((import_module("nimbus"), import_name(#n)))
HOST(log) extern void host_log(int32_t level, const char *ptr, int32_t len);
HOST(now) extern int64_t host_now(void);
HOST(random_bytes) extern void host_random_bytes(char *ptr, int32_t len);

#define OPERATIONS(X)                                                               \
    X(kv_get) X(kv_put) X(kv_delete) X(kv_scan) X(kv_query) X(blob_put) X(blob_get) \
    X(blob_head) X(blob_delete) X(blob_list) X(queue_send) X(event_publish)         \
    X(http_fetch) X(secret_get)
#define DECLARE(n) HOST(n) extern int64_t op_##n(const char *ptr, int32_t len);
OPERATIONS(DECLARE)

typedef int64_t (*operation)(const char *, int32_t);
static const struct { const char *name; operation fn; } operations[] = {
#define ENTRY(n) {#n, op_##n},
    OPERATIONS(ENTRY)
};

#define EXPORT(n) __attribute__((export_name(#n)))

/* what the host reads when the runtime itself fails (never a function's error):
 * {"error": {"kind": "nimbus.UnhandledException", "message": "the Python runtime failed"}} */
static const char RUNTIME_FAILED[] =
    "\x81\xa5" "error" "\x82\xa4" "kind" "\xb9" "nimbus.UnhandledException"
    "\xa7" "message" "\xb9" "the Python runtime failed";

static PyObject *run_fn, *compile_fn, *warm_fn;
/* the reply of the last call, alive until the instance is dropped */
static PyObject *reply;

static int64_t pack(const char *ptr, size_t len) {
    return ((int64_t)(uintptr_t)ptr << 32) | (int64_t)(uint32_t)len;
}

/* the exception that ended the runtime's own code, as a line of the invocation's log */
static void log_error(void) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *text = value != NULL ? PyObject_Str(value) : NULL;
    const char *message = text != NULL ? PyUnicode_AsUTF8(text) : NULL;
    if (message == NULL) PyErr_Clear();
    char line[1024];
    int n = snprintf(line, sizeof line, "the Python runtime failed: %s: %s",
                     type != NULL ? ((PyTypeObject *)type)->tp_name : "no exception",
                     message != NULL ? message : "");
    host_log(3, line, n < 0 ? 0 : n < (int)sizeof line ? n : (int)sizeof line - 1);
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
}

static int64_t reply_of(PyObject *result) {
    if (result != NULL && !PyBytes_Check(result)) {
        char line[256];
        int n = snprintf(line, sizeof line, "the Python runtime failed: its reply is a %.100s, "
                         "not bytes", Py_TYPE(result)->tp_name);
        host_log(3, line, n < 0 ? 0 : n < (int)sizeof line ? n : (int)sizeof line - 1);
    }
    if (result == NULL || !PyBytes_Check(result)) {
        if (result == NULL) log_error();
        Py_XDECREF(result);
        return pack(RUNTIME_FAILED, sizeof RUNTIME_FAILED - 1);
    }
    Py_XDECREF(reply);
    reply = result;
    return pack(PyBytes_AS_STRING(result), (size_t)PyBytes_GET_SIZE(result));
}

/* --- the built-in module _nimbus ------------------------------------------------ */

static PyObject *py_log(PyObject *self, PyObject *args) {
    int level;
    const char *text;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "is#:log", &level, &text, &len)) return NULL;
    host_log(level, text, (int32_t)(len > INT32_MAX ? INT32_MAX : len));
    Py_RETURN_NONE;
}

static PyObject *py_now(PyObject *self, PyObject *unused) {
    return PyLong_FromLongLong(host_now());
}

static PyObject *py_random_bytes(PyObject *self, PyObject *arg) {
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0 || n > 65536) {
        PyErr_SetString(PyExc_ValueError, "random_bytes takes 0 to 65536 bytes a call");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out != NULL && n > 0) host_random_bytes(PyBytes_AS_STRING(out), (int32_t)n);
    return out;
}

static PyObject *py_call(PyObject *self, PyObject *args) {
    const char *op;
    Py_buffer request;
    if (!PyArg_ParseTuple(args, "sy*:call", &op, &request)) return NULL;
    operation fn = NULL;
    for (size_t i = 0; i < sizeof operations / sizeof operations[0]; i++)
        if (strcmp(operations[i].name, op) == 0) fn = operations[i].fn;
    if (fn == NULL || request.len > INT32_MAX) {
        PyBuffer_Release(&request);
        PyErr_Format(PyExc_LookupError, "no service operation named %.64s", op);
        return NULL;
    }
    int64_t r = fn((const char *)request.buf, (int32_t)request.len);
    PyBuffer_Release(&request);
    char *ptr = (char *)(uintptr_t)((uint64_t)r >> 32);
    size_t len = (size_t)(uint32_t)r;
    PyObject *out = PyBytes_FromStringAndSize(ptr, (Py_ssize_t)len);
    free(ptr); /* the host allocated the reply with nimbus_alloc */
    return out;
}

static PyMethodDef methods[] = {
    {"log", py_log, METH_VARARGS, "log(level, message): one line of the invocation's log"},
    {"now", py_now, METH_NOARGS, "now() -> wall-clock nanoseconds since the Unix epoch"},
    {"random_bytes", py_random_bytes, METH_O, "random_bytes(n) -> n bytes (n <= 65536)"},
    {"call", py_call, METH_VARARGS, "call(op, request) -> reply: one service operation"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_nimbus", NULL, -1, methods};

static PyObject *init_module(void) { return PyModule_Create(&module); }

/* --- the ABI -------------------------------------------------------------------- */

EXPORT(nimbus_abi_version) int32_t nimbus_abi_version(void) { return 1; }

EXPORT(nimbus_alloc) void *nimbus_alloc(int32_t size) {
    return size < 0 ? NULL : malloc(size ? (size_t)size : 1);
}

EXPORT(nimbus_handle) int64_t nimbus_handle(const char *ptr, int32_t len) {
    uint32_t n = 0;
    if (len >= 4) memcpy(&n, ptr, 4);
    if (len < 4 || n > (uint32_t)len - 4) return pack(RUNTIME_FAILED, sizeof RUNTIME_FAILED - 1);
    PyObject *code = PyMemoryView_FromMemory((char *)ptr + 4, n, PyBUF_READ);
    PyObject *event = PyBytes_FromStringAndSize(ptr + 4 + n, len - 4 - (int32_t)n);
    PyObject *result = NULL;
    if (code != NULL && event != NULL)
        result = PyObject_CallFunctionObjArgs(run_fn, code, event, NULL);
    Py_XDECREF(code);
    Py_XDECREF(event);
    return reply_of(result);
}

EXPORT(nimbus_python_compile) int64_t nimbus_python_compile(const char *ptr, int32_t len) {
    PyObject *sources = PyBytes_FromStringAndSize(ptr, len);
    PyObject *result = sources ? PyObject_CallOneArg(compile_fn, sources) : NULL;
    Py_XDECREF(sources);
    return reply_of(result);
}

EXPORT(nimbus_python_warm) void nimbus_python_warm(void) {
    PyObject *result = PyObject_CallNoArgs(warm_fn);
    if (result == NULL) PyErr_Clear();
    Py_XDECREF(result);
}

/* Build time only: start the interpreter with the standard library at /lib/python3.11
 * and the SDK at /sdk. `mode` 1 (an instance of its own, thrown away): compile the
 * standard library's bytecode bundle to /sdk/stdlib.bundle. `mode` 0 (the instance the
 * snapshot is taken of): import nimbus._runtime (which imports what functions use most,
 * reads that bundle and runs its warm-up) and seal it. 0 on success; otherwise the
 * error is printed to stderr. */
EXPORT(nimbus_python_init) int32_t nimbus_python_init(int32_t mode) {
    if (PyImport_AppendInittab("_nimbus", init_module) < 0) return 1;
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.write_bytecode = 0;
    config.site_import = 0;
    config.module_search_paths_set = 1;
    PyStatus status = PyConfig_SetString(&config, &config.home, L"/");
    if (!PyStatus_Exception(status))
        status = PyWideStringList_Append(&config.module_search_paths, L"/lib/python3.11");
    if (!PyStatus_Exception(status))
        status = PyWideStringList_Append(&config.module_search_paths, L"/sdk");
    if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        fprintf(stderr, "Python did not start: %s\n", status.err_msg ? status.err_msg : "?");
        return 2;
    }
    if (mode == 1) {
        PyObject *bundles = PyImport_ImportModule("nimbus._bundles");
        PyObject *done = bundles ? PyObject_CallMethod(bundles, "write_stdlib", NULL) : NULL;
        Py_XDECREF(bundles);
        if (done == NULL) {
            PyErr_Print();
            return 5;
        }
        Py_DECREF(done);
        return 0;
    }
    PyObject *runtime = PyImport_ImportModule("nimbus._runtime");
    if (runtime == NULL) {
        PyErr_Print();
        return 3;
    }
    run_fn = PyObject_GetAttrString(runtime, "run");
    compile_fn = PyObject_GetAttrString(runtime, "compile_sources");
    warm_fn = PyObject_GetAttrString(runtime, "warm_up");
    PyObject *seal = PyObject_GetAttrString(runtime, "seal");
    PyObject *sealed = seal ? PyObject_CallNoArgs(seal) : NULL;
    Py_XDECREF(seal);
    if (run_fn == NULL || compile_fn == NULL || warm_fn == NULL || sealed == NULL) {
        PyErr_Print();
        return 4;
    }
    Py_DECREF(sealed);
    return 0;
}
