// A project's own copy of the registration helpers, as older kernel projects shipped them: besides the
// TORCH_LIBRARY name-expansion macros, REGISTER_EXTENSION defines the Python module's init function.
#pragma once

#include <Python.h>

#include <torch/library.h>

#define OWN_CONCAT_(A, B) A##B
#define OWN_CONCAT(A, B) OWN_CONCAT_(A, B)
#define OWN_STR_(A) #A
#define OWN_STR(A) OWN_STR_(A)

#define TORCH_LIBRARY_EXPAND(NAME, MODULE) TORCH_LIBRARY(NAME, MODULE)
#define TORCH_LIBRARY_IMPL_EXPAND(NAME, DEVICE, MODULE) TORCH_LIBRARY_IMPL(NAME, DEVICE, MODULE)

#define REGISTER_EXTENSION(NAME)                                                          \
  PyMODINIT_FUNC OWN_CONCAT(PyInit_, NAME)() {                                            \
    static PyModuleDef module = {PyModuleDef_HEAD_INIT, OWN_STR(NAME),                    \
                                 "own-pyinit: module made by the project's REGISTER_EXTENSION", \
                                 -1, nullptr, nullptr, nullptr, nullptr, nullptr};        \
    return PyModule_Create(&module);                                                      \
  }
