/* Lifeboat's launchers: Lifeboat.exe (GUI subsystem: Start menu, Run key) and lifeboat-cli.exe (console).
 *
 * Both load the private CPython runtime (python\python313.dll next to this file) themselves and call
 * its Py_Main, so no python.exe or pythonw.exe ships: security tools see a signed Lifeboat binary, and
 * an allow-list of it does not admit a general interpreter. The interpreter runs isolated (-I: no
 * PYTHON* variables, no user site, the current directory is not on sys.path) and runs only
 * `lifeboat_launcher.main()` (python\Lib\site-packages), which calls desktop.cli.main with our arguments.
 * Built on Linux by installer/launcher.py with mingw-w64 (-DLIFEBOAT_GUI for the GUI one).
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>

typedef int(__cdecl *py_main_fn)(int, wchar_t **);

#define PATH_CHARS 32768
static const wchar_t CODE[] = L"import lifeboat_launcher; lifeboat_launcher.main()";

static int fail(const wchar_t *what, const wchar_t *path) {
    wchar_t text[PATH_CHARS + 512];
    DWORD err = GetLastError();
    _snwprintf(text, PATH_CHARS + 511, L"Lifeboat cannot start: %ls\n%ls\n(Windows error %lu)\n"
               L"Repair or reinstall Lifeboat.", what, path ? path : L"", (unsigned long)err);
    text[PATH_CHARS + 511] = 0;
#ifdef LIFEBOAT_GUI
    MessageBoxW(NULL, text, L"Lifeboat", MB_OK | MB_ICONERROR);
#else
    fwprintf(stderr, L"%ls\n", text);
#endif
    return 120;  /* not an exit code of the app (0, 1, 2): "the runtime could not be loaded" */
}

int wmain(int argc, wchar_t **argv) {
    static wchar_t dir[PATH_CHARS], pydir[PATH_CHARS], dll[PATH_CHARS];
    DWORD n = GetModuleFileNameW(NULL, dir, PATH_CHARS);
    if (n == 0 || n >= PATH_CHARS) return fail(L"its own path is unknown or too long", NULL);
    wchar_t *slash = wcsrchr(dir, L'\\');
    if (slash == NULL) return fail(L"its own path has no folder", dir);
    *slash = 0;
    if (_snwprintf(pydir, PATH_CHARS, L"%ls\\python", dir) < 0 ||
        _snwprintf(dll, PATH_CHARS, L"%ls\\python313.dll", pydir) < 0)
        return fail(L"its install path is too long", dir);
    /* DLLs come from System32, the runtime's folder and our own only: never the current directory. */
    SetDefaultDllDirectories(LOAD_LIBRARY_SEARCH_DEFAULT_DIRS);
    AddDllDirectory(pydir);
    HMODULE py = LoadLibraryExW(dll, NULL, LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR | LOAD_LIBRARY_SEARCH_DEFAULT_DIRS);
    if (py == NULL) return fail(L"the Python runtime is missing or damaged", dll);
    py_main_fn py_main = (py_main_fn)(void (*)(void))GetProcAddress(py, "Py_Main");
    if (py_main == NULL) return fail(L"the Python runtime has no Py_Main", dll);

    wchar_t **args = calloc((size_t)argc + 4, sizeof(wchar_t *));
    if (args == NULL) return fail(L"out of memory", NULL);
    int k = 0;
    args[k++] = argv[0];
    args[k++] = L"-I";
    args[k++] = L"-c";
    args[k++] = (wchar_t *)CODE;
    for (int i = 1; i < argc; i++) args[k++] = argv[i];
    args[k] = NULL;
    return py_main(k, args);
}
