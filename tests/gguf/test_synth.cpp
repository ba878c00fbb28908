// Tests of `loom synth` model synthesis (gguf/synth.h).
#include "catch.hpp"
