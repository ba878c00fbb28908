// Generation loop: one forward pass per token after a single prefill, stop checks on ids and text.
#include "engine/generator.h"

#include <algorithm>
#include <chrono>

#include "engine/errors.h"

namespace loom::engine {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Length of the longest suffix of `text` that is a proper prefix of some stop string: text that
// must be held back because the next token could complete a stop string.
size_t held_back(std::string_view text, const std::vector<std::string>& stops) {
    size_t hold = 0;
    for (const auto& s : stops)
        for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
            if (text.substr(text.size() - n) == std::string_view(s).substr(0, n)) {
                hold = n;
                break;
            }
    return hold;
}

}  // namespace

std::string_view to_string(StopReason reason) {
    switch (reason) {
        case StopReason::Eos: return "eos";
        case StopReason::StopString: return "stop_string";
        case StopReason::MaxTokens: return "max_tokens";
        case StopReason::ContextFull: return "context_full";
    }
    return "unknown";
}

std::vector<int32_t> end_of_generation_ids(const tokenizer::Tokenizer& tok) {
    static const std::string_view kEndMarkers[] = {"<|im_end|>",   "<|eot_id|>",      "<|end|>",
                                                   "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
                                                   "<|eom_id|>",   "</s>"};
    std::vector<int32_t> ids;
    const auto& special = tok.special_ids();
    if (special.eos) ids.push_back(*special.eos);
    if (special.eot) ids.push_back(*special.eot);
    for (std::string_view marker : kEndMarkers)
        if (const auto id = tok.find_token(marker); id && tok.token_type(*id) == tokenizer::TokenType::Control)
            ids.push_back(*id);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return ids;
}

GenerateResult generate(Backend& backend, const tokenizer::Tokenizer& tok, std::span<const int32_t> prompt,
                        const GenerateOptions& options, const std::function<void(std::string_view)>& on_text) {
    if (prompt.empty()) throw RequestError("the prompt has no tokens");
    if (static_cast<int>(prompt.size()) >= backend.n_ctx())
        throw RequestError("the prompt has " + std::to_string(prompt.size()) + " tokens; the context holds " +
                           std::to_string(backend.n_ctx()) + " (one more is needed to generate)");
    if (options.max_tokens < 0) throw RequestError("max_tokens must be >= 0");
    for (const auto& s : options.stop_strings)
        if (s.empty()) throw RequestError("stop strings must not be empty");

    const int n_vocab = backend.config().n_vocab;
    Sampler sampler(options.sampling, n_vocab);
    const std::vector<int32_t> end_ids = end_of_generation_ids(tok);
    tokenizer::StreamingDetokenizer detok(tok, {.skip_control = true, .continuation = true});

    GenerateResult r;
    std::vector<int32_t> history(prompt.begin(), prompt.end());
    std::vector<float> logits(static_cast<size_t>(n_vocab));
    std::string text;    // everything decoded so far
    size_t emitted = 0;  // how much of it was handed to on_text
    const auto emit_until = [&](size_t end) {
        if (end > emitted && on_text) on_text(std::string_view(text).substr(emitted, end - emitted));
        emitted = std::max(emitted, end);
    };

    const auto t_start = Clock::now();
    backend.reset();
    backend.forward(prompt, logits, false, options.layer_observer);
    r.timings.prompt_ms = ms_since(t_start);
    Clock::time_point t_first{};

    bool stopped = options.max_tokens == 0;
    for (int step = 0; !stopped; ++step) {
        int32_t token;
        if (options.top_logprobs >= 0) {
            SampledToken s = sampler.sample_with_logprobs(logits, history, static_cast<uint64_t>(step),
                                                          options.top_logprobs);
            token = s.token;
            r.logprobs.push_back(std::move(s));
        } else {
            token = sampler.sample(logits, history, static_cast<uint64_t>(step));
        }
        if (step == 0) {
            t_first = Clock::now();
            r.timings.ttft_ms = ms_since(t_start);
        }
        if (!options.ignore_eos && std::binary_search(end_ids.begin(), end_ids.end(), token)) {
            if (options.top_logprobs >= 0) r.logprobs.pop_back();
            r.stop_reason = StopReason::Eos;
            break;
        }
        r.ids.push_back(token);
        history.push_back(token);
        text += detok.feed(token);

        size_t stop_at = std::string::npos;
        for (const auto& s : options.stop_strings) {
            // A new match can only start where the last emit could not yet rule one out.
            const size_t from = emitted >= s.size() ? emitted - s.size() + 1 : 0;
            stop_at = std::min(stop_at, text.find(s, from));
        }
        if (stop_at != std::string::npos) {
            text.resize(stop_at);
            emit_until(stop_at);
            r.stop_reason = StopReason::StopString;
            stopped = true;
        } else if (static_cast<int>(r.ids.size()) >= options.max_tokens) {
            r.stop_reason = StopReason::MaxTokens;
            stopped = true;
        } else if (backend.n_past() >= backend.n_ctx()) {
            r.stop_reason = StopReason::ContextFull;
            stopped = true;
        } else {
            emit_until(text.size() - held_back(text, options.stop_strings));
            const int32_t next[1] = {token};
            backend.forward(next, logits, false, options.layer_observer);
        }
    }
    if (r.stop_reason != StopReason::StopString) {
        text += detok.flush();
        emit_until(text.size());
    }
    r.text = std::move(text);
    if (!r.ids.empty()) {
        r.timings.decode_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_first).count();
        if (r.ids.size() > 1 && r.timings.decode_ms > 0)
            r.timings.decode_tok_s = double(r.ids.size() - 1) / (r.timings.decode_ms / 1000.0);
    }
    return r;
}

}  // namespace loom::engine
