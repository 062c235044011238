/* SPDX-License-Identifier: MIT */
/* placeholder: replaced by the server module */
#include <stdio.h>
int main(void) { puts("tunad: not built yet"); return 1; }
