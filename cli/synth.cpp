// `loom synth`: write a GGUF model with seeded random weights at a real shape (see gguf/synth.h).
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "gguf/synth.h"

namespace loom::cli {
namespace {

std::string human_size(uint64_t b) {
    char s[32];
    if (b >= (1ull << 30))
        std::snprintf(s, sizeof s, "%.2f GiB", b / double(1ull << 30));
    else
        std::snprintf(s, sizeof s, "%.2f MiB", b / double(1ull << 20));
    return s;
}

}  // namespace

void register_synth(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("synth", "Write a GGUF model with random weights at a real shape");
    struct Options {
        std::string arch, shape, type, vocab, out;
        uint64_t seed = 0;
        unsigned threads = 0;
    };
    auto opt = std::make_shared<Options>();
    cmd->add_option("--arch", opt->arch, "llama or qwen2")->required();
    cmd->add_option("--shape", opt->shape, "Shape name: " + gguf::model_shape_names())->required();
    cmd->add_option("--type", opt->type, "q4_0, q4_1, q8_0, f16 or q4_k_m")->required();
    cmd->add_option("--vocab", opt->vocab, "GGUF whose tokenizer.* keys are copied")->required();
    cmd->add_option("--seed", opt->seed, "Weights seed (same seed, same bytes)");
    cmd->add_option("--threads", opt->threads, "Generator threads (default: all cores; output does not depend on it)");
    cmd->add_option("-o,--output", opt->out, "Output GGUF path")->required();
    cmd->callback([opt, &exit_code] {
        try {
            gguf::SynthOptions o;
            o.arch = gguf::parse_synth_arch(opt->arch);
            o.shape = gguf::parse_model_shape(opt->shape);
            o.type = gguf::parse_synth_type(opt->type);
            o.vocab = opt->vocab;
            o.seed = opt->seed;
            o.threads = opt->threads;

            const auto start = std::chrono::steady_clock::now();
            const gguf::SynthModel model = gguf::synthesize(o);
            if (model.vocab_raised)
                std::fprintf(stderr,
                             "loom synth: note: the tokenizer has %u tokens, more than shape %s's vocab %u; "
                             "vocab raised to %u\n",
                             model.n_vocab, o.shape.name.c_str(), o.shape.vocab, model.n_vocab);
            model.writer.write(opt->out);
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            std::printf("loom synth: %s %s %s seed %llu, vocab %u, %zu tensors, %s, %.1f s -> %s\n",
                        o.shape.name.c_str(), opt->arch.c_str(), opt->type.c_str(),
                        static_cast<unsigned long long>(o.seed), model.n_vocab, model.tensors.size(),
                        human_size(model.writer.file_size()).c_str(), seconds, opt->out.c_str());
            exit_code = 0;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "loom synth: %s\n", e.what());
            exit_code = 2;
        }
    });
}

}  // namespace loom::cli
