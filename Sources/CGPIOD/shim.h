// libgpiod 1.6 (Debian 12): chips, lines and output requests.
#include <gpiod.h>
