#include <doctest/doctest.h>
TEST_CASE("unit smoke") { CHECK(1 + 1 == 2); }
