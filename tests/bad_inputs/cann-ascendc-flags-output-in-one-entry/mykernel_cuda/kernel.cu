// Never compiled.
__global__ void mykernel_noop_kernel() {}
