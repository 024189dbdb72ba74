#pragma once
void mykernel_noop();
