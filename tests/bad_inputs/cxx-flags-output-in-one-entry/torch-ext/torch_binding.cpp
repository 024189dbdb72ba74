// Never compiled: this project only exists to be rejected by the build.toml validator.
#include "torch_binding.h"
