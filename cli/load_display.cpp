// load_display: engine::describe's lines, and cli/progress's bar for the upload on a terminal.
#include "cli/load_display.h"

#include <memory>
#include <optional>

#include "cli/progress.h"

namespace loom::cli {
namespace {

struct Display {
    bool tty;
    std::FILE* out;
    bool ready = false;
    std::optional<Progress> upload{};  // the bar while weights upload (terminal only)
    uint64_t shown = 0;                // bytes the bar has been advanced by

    void operator()(const engine::LoadStep& s) {
        using Kind = engine::LoadStep::Kind;
        if (s.kind == Kind::weights && s.bytes < s.total) {  // in progress
            if (!tty) return;
            if (!upload) upload.emplace("loading weights to " + s.what, 0, s.total, true, out);
            upload->advance(s.bytes - shown);
            shown = s.bytes;
            return;
        }
        if (upload) {
            upload->advance(s.bytes > shown && s.kind == Kind::weights ? s.bytes - shown : 0);
            upload->finish();
            upload.reset();
        }
        if (tty && ready) return;
        if (s.kind == Kind::ready) ready = true;
        std::fprintf(out, tty ? "%s\n" : "[load] %s\n", engine::describe(s).c_str());
        std::fflush(out);
    }
};

}  // namespace

engine::LoadCallback load_display(bool tty, std::FILE* out) {
    auto d = std::make_shared<Display>(Display{tty, out});
    return [d](const engine::LoadStep& s) { (*d)(s); };
}

}  // namespace loom::cli
