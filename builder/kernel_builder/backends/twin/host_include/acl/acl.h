// kernel-builder's CPU twin: CANN's umbrella header name, for bindings that include it.
#pragma once

#include "acl/acl_rt.h"
