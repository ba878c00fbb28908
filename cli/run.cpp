// `loom run MODEL`: an interactive chat on the engine, in this process (like `ollama run`): answers
// stream as they are sampled, the conversation goes through the model's chat template, Ctrl-C stops
// an answer. With -p TEXT, or text piped on standard input, it answers once and exits.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>

#include "cli/chat_session.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/open_backend.h"
#include "cli/sampling_flags.h"
#include "engine/generator.h"
#include "models/model_cache.h"
#include "tokenizer/tokenizer.h"

namespace loom::cli {
namespace {

struct Options {
    std::string model;
    std::string backend = "cuda";
    std::optional<std::string> prompt;
    std::string system;
    int n = 512;
    int ctx = 0;
    int threads = 0;
    engine::SamplingParams sampling;
    bool ignore_eos = false;
};

struct AnswerInterrupted {};

// Answers rendered prompts on the loaded model, streaming text to stdout; stoppable by Ctrl-C.
class Answerer {
public:
    Answerer(engine::Backend& backend, const tokenizer::Tokenizer& tok, engine::GenerateOptions options)
        : backend_(backend), tok_(tok), options_(std::move(options)) {}

    // The answer's text, or nullopt when Ctrl-C stopped it (`watch` null: no Ctrl-C handling).
    std::optional<std::string> answer(const std::string& rendered, InterruptWatch* watch) {
        const std::vector<int32_t> ids = tok_.encode(rendered, {.add_special = false, .parse_special = true});
        if (watch) watch->reset();
        const auto stream = [&](std::string_view piece) {
            if (watch && watch->interrupted()) throw AnswerInterrupted{};
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
        };
        try {
            const engine::GenerateResult r = engine::generate(backend_, tok_, ids, options_, stream);
            std::printf("\n");
            if (r.finish == engine::FinishReason::context_full)
                std::fprintf(stderr, "(the context is full: /clear starts over)\n");
            return r.text;
        } catch (const AnswerInterrupted&) {
            std::printf("\n");
            std::fprintf(stderr, "(answer stopped)\n");
            return std::nullopt;
        }
    }

private:
    engine::Backend& backend_;
    const tokenizer::Tokenizer& tok_;
    engine::GenerateOptions options_;
};

// One exchange; an error (a conversation past the context, a template that raises) is reported, not recorded.
void exchange(ChatSession& session, Answerer& answerer, const std::string& user, InterruptWatch* watch) {
    try {
        if (auto text = answerer.answer(session.render_next(user), watch)) session.add_exchange(user, std::move(*text));
    } catch (const std::exception& e) {  // a request the engine refuses, a template that raises: the chat goes on
        std::fprintf(stderr, "loom run: %s\n", e.what());
    }
}

// Applies a /command; false for /bye.
bool command(ChatSession& session, const ChatInput& in) {
    switch (in.kind) {
        case ChatInput::Kind::bye: return false;
        case ChatInput::Kind::system:
            session.set_system(in.text);
            std::fprintf(stderr, in.text.empty() ? "(system message removed)\n" : "(system message set)\n");
            break;
        case ChatInput::Kind::clear:
            session.clear();
            std::fprintf(stderr, "(conversation cleared)\n");
            break;
        case ChatInput::Kind::help: std::fwrite(chat_help().data(), 1, chat_help().size(), stdout); break;
        case ChatInput::Kind::unknown:
            std::fprintf(stderr, "unknown command %s; /? lists the commands\n", in.text.c_str());
            break;
        default: break;
    }
    return true;
}

int interactive(ChatSession& session, Answerer& answerer) {
    InterruptWatch watch;
    LineReader reader;
    bool interrupted_at_prompt = false;
    for (;;) {
        // A Ctrl-C that stopped the last answer does not count at the prompt; once the prompt is
        // there one does.
        if (!interrupted_at_prompt) watch.reset();
        std::printf(">>> ");
        std::fflush(stdout);
        std::string line;
        const LineReader::Result r = reader.read(watch, line);
        if (r == LineReader::Result::end_of_input) break;
        if (r == LineReader::Result::interrupted) {
            // Taken here, not at the loop's top: a second Ctrl-C that comes while the hint below is
            // printed must still count.
            if (interrupted_at_prompt || watch.take() > 1) break;
            interrupted_at_prompt = true;
            std::printf("\n");
            std::fprintf(stderr, "(Ctrl-C again, Ctrl-D or /bye to exit)\n");
            continue;
        }
        interrupted_at_prompt = false;
        const ChatInput in = parse_chat_input(line);
        if (in.kind == ChatInput::Kind::message)
            exchange(session, answerer, in.text, &watch);
        else if (!command(session, in))
            return 0;
    }
    std::printf("\n");
    return 0;
}

std::string read_stdin() {
    std::string text{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
}

int run(const Options& o) {
    check_backend_kind(o.backend);
    check_backend_usable(o.backend);
    // One answer for -p TEXT or text on stdin, known before the model is loaded.
    std::optional<std::string> once = o.prompt;
    if (!once && !::isatty(STDIN_FILENO)) once = read_stdin();
    if (once && once->empty()) throw std::invalid_argument("the prompt is empty");
    // The ChatML fallback's warning goes to stderr so stdout holds only answers.
    spdlog::set_default_logger(spdlog::stderr_color_st("run"));
    const auto file = gguf::File::open(o.model);
    const auto tok = tokenizer::Tokenizer::from_gguf(file);
    ChatSession session(tokenizer::ChatTemplate::from_gguf(file), tokenizer::special_token_strings(file));
    session.set_system(o.system);
    const auto backend = open_backend(o.backend, file, {.n_ctx = o.ctx, .threads = o.threads});
    std::fprintf(stderr, "loom run: %s on backend %s, device %s\n", o.model.c_str(), backend->name().c_str(),
                 backend->device().c_str());
    engine::GenerateOptions g;
    g.max_tokens = o.n;
    g.sampling = o.sampling;
    g.ignore_eos = o.ignore_eos;
    Answerer answerer(*backend, tok, g);
    if (once) {
        answerer.answer(session.render_next(*once), nullptr);
        return 0;
    }
    std::fprintf(stderr, "Type a message, /? for help, /bye to exit.\n");
    return interactive(session, answerer);
}

}  // namespace

void register_run(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("run", "Chat with a model in this terminal (default backend: cuda)");
    auto o = std::make_shared<Options>();
    cmd->add_option("MODEL,-m,--model", o->model, "GGUF model file or cached model name")
        ->required()
        ->transform(models::file_or_cached_model());
    cmd->add_option("--backend", o->backend, "cuda (default) or cpu (the reference backend; only when named)");
    cmd->add_option("-p,--prompt", o->prompt, "Answer this message once and exit");
    cmd->add_option("--system", o->system, "The system message to start with");
    cmd->add_option("-n", o->n, "Maximum tokens per answer")->check(CLI::Range(1, 1 << 24));
    cmd->add_option("--ctx", o->ctx, "Context size in tokens (default: the model's)")->check(CLI::Range(0, 1 << 24));
    cmd->add_option("--threads", o->threads, "CPU threads (default: all)")->check(CLI::Range(0, 1024));
    add_sampling_flags(*cmd, o->sampling);
    cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-generation tokens");
    cmd->callback([o, &exit_code] { exit_code = run_model_command("run", o->model, [&] { return run(*o); }); });
}

}  // namespace loom::cli
