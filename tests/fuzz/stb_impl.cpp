// stb_image's implementation (Debian's libstb-dev header) compiled with the fuzzers' sanitizers, in
// place of the prebuilt libstb the engine links, so its decoders are instrumented too.
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
