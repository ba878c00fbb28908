// main() of test programs parameterised over backends (support/backends.h): settles the backends
// under test, runs Catch2, then repeats which backends were skipped.
#include "catch_session.hpp"
#include "support/backends.h"

int main(int argc, char** argv) {
    loom::test::settle_tested_backends();
    const int rc = Catch::Session().run(argc, argv);
    loom::test::report_untested_backends();
    return rc;
}
