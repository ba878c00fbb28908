// `loom tokenize -m FILE [--no-add-special] [--no-parse-special]`: stdin bytes -> ids on one line;
// `loom detokenize -m FILE`: whitespace-separated ids on stdin -> text on stdout.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "models/model_cache.h"
#include "tokenizer/tokenizer.h"

namespace loom::cli {
namespace {

std::string read_all_stdin() {
    std::string data;
    char buffer[1 << 16];
    size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, stdin)) > 0) data.append(buffer, n);
    return data;
}

void run_tokenize(const std::string& model, bool add_special, bool parse_special) {
    const auto tok = tokenizer::Tokenizer::open(model);
    const auto ids = tok.encode(read_all_stdin(), {.add_special = add_special, .parse_special = parse_special});
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) line += ' ';
        line += std::to_string(ids[i]);
    }
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
}

// Every whitespace-separated word must be a decimal id; the first that is not stops the command.
std::vector<tokenizer::TokenId> parse_ids(const tokenizer::Tokenizer& tok, const std::string& input) {
    std::vector<tokenizer::TokenId> ids;
    size_t pos = 0;
    while (true) {
        pos = input.find_first_not_of(" \t\r\n\v\f", pos);
        if (pos == std::string::npos) return ids;
        const size_t end = std::min(input.find_first_of(" \t\r\n\v\f", pos), input.size());
        const std::string word = input.substr(pos, end - pos);
        int64_t id = 0;
        const auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
        if (ec != std::errc() || ptr != word.data() + word.size())
            throw tokenizer::Error("'" + word + "' is not a token id");
        if (id < 0 || uint64_t(id) >= tok.vocab_size()) throw tokenizer::InvalidTokenIdError(id, tok.vocab_size());
        ids.push_back(tokenizer::TokenId(id));
        pos = end;
    }
}

void run_detokenize(const std::string& model) {
    const auto tok = tokenizer::Tokenizer::open(model);
    const auto ids = parse_ids(tok, read_all_stdin());
    const std::string text = tok.decode(ids);
    std::fwrite(text.data(), 1, text.size(), stdout);
}

}  // namespace

void register_tokenize(CLI::App& app, int& exit_code) {
    struct Options {
        std::string model;
        bool no_add_special = false;
        bool no_parse_special = false;
    };
    auto opt = std::make_shared<Options>();

    auto* tokenize = app.add_subcommand("tokenize", "Print the token ids of stdin (all of it, as bytes)");
    tokenize->add_option("-m,--model", opt->model, "GGUF file (or cached model name) with the tokenizer")
        ->required()
        ->transform(models::file_or_cached_model());
    tokenize->add_flag("--no-add-special", opt->no_add_special, "Add no BOS/EOS");
    tokenize->add_flag("--no-parse-special", opt->no_parse_special, "Treat special token texts as plain text");
    tokenize->callback([opt, &exit_code] {
        try {
            run_tokenize(opt->model, !opt->no_add_special, !opt->no_parse_special);
            exit_code = 0;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "loom tokenize: %s\n", e.what());
            exit_code = 2;
        }
    });

    auto* detokenize = app.add_subcommand("detokenize", "Print the text of the token ids on stdin");
    detokenize->add_option("-m,--model", opt->model, "GGUF file (or cached model name) with the tokenizer")
        ->required()
        ->transform(models::file_or_cached_model());
    detokenize->callback([opt, &exit_code] {
        try {
            run_detokenize(opt->model);
            exit_code = 0;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "loom detokenize: %s\n", e.what());
            exit_code = 2;
        }
    });
}

}  // namespace loom::cli
