// Never compiled.
void mykernel_noop() {}
