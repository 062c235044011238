/* SPDX-License-Identifier: MIT */
/* Stands in for tunad until api/ and engine/ link (see server/meson.build). */
#include <stdio.h>
int main(void) { puts("tunad: not built yet"); return 1; }
