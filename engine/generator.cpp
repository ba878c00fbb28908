// Generation loop: one Engine request stepped to its end, stop strings checked on the streamed text.
#include "engine/generator.h"

#include <algorithm>
#include <chrono>

#include "engine/engine.h"
#include "engine/errors.h"
#include "engine/request_output.h"

namespace loom::engine {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

std::vector<int32_t> end_of_generation_ids(const tokenizer::Tokenizer& tok) {
    static const std::string_view kEndMarkers[] = {"<|im_end|>",    "<|eot_id|>",      "<|end|>",    "<end_of_turn>",
                                                   "<|endoftext|>", "<|end_of_text|>", "<|eom_id|>", "</s>"};
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
    // Engine::add makes the request checks (check_request) before any compute; max_tokens 0 is
    // generate()'s own (prefill only).
    if (options.max_tokens < 0) throw RequestError("max_tokens", "must be >= 0");
    const auto t_start = Clock::now();
    RequestOutput out(tok, options.stop_strings, t_start);  // refuses an empty stop string

    Engine engine(backend, options.layer_observer);
    RequestOptions request;
    request.sampling = options.sampling;
    request.max_tokens = std::max(options.max_tokens, 1);
    request.top_logprobs = options.top_logprobs;
    if (!options.ignore_eos) request.stop_ids = end_of_generation_ids(tok);
    const uint64_t id = engine.add(std::vector<int32_t>(prompt.begin(), prompt.end()), request);

    GenerateResult r;
    if (options.max_tokens == 0) {
        // Prefill only: Engine requests sample at least one token, and a token nobody asked for is
        // work (and a possible sampling error) that does not belong here, so the prompt runs
        // through the Engine's single-sequence forward pass instead.
        engine.cancel(id);
        std::vector<float> logits(static_cast<size_t>(backend.config().n_vocab));
        engine.kv().forward(prompt, logits, false, options.layer_observer);
        r.timings.prompt_ms = ms_since(t_start);
        return r;
    }

    // Text of the token that ends the request comes with what finishing releases, in one call.
    const auto take = [&] {
        for (SampledToken& t : out.take_tokens()) {
            r.ids.push_back(t.token);
            if (options.top_logprobs >= 0) r.logprobs.push_back(std::move(t));
        }
        const std::string piece = out.take_text();
        if (piece.empty()) return;
        if (on_text) on_text(piece);
        r.text += piece;
    };
    while (!out.finished()) {
        for (const TokenEvent& e : engine.step()) {
            out.feed(e);
            if (out.finish() == FinishReason::error) throw RequestError(out.error());
            if (out.finish() == FinishReason::stop_string) engine.cancel(id);  // false when the token also ended it
            if (!out.finished()) take();
        }
        // One request alone is admitted at its first step unless other sequences hold the slots or blocks.
        if (!out.finished() && engine.running() == 0)
            throw RequestError("the backend has no free sequence slot or KV blocks for the request (" +
                               std::to_string(engine.kv_blocks().open_seqs()) + " of " +
                               std::to_string(engine.kv_blocks().max_seqs()) + " slots open, " +
                               std::to_string(engine.kv_blocks().free_blocks()) + " blocks free)");
    }
    take();
    r.finish = out.finish();
    r.timings.prompt_ms = r.timings.ttft_ms = 1e3 * out.ttft_s();
    if (!r.ids.empty()) {
        r.timings.decode_ms = 1e3 * out.decode_s();
        if (r.ids.size() > 1 && r.timings.decode_ms > 0)
            r.timings.decode_tok_s = double(r.ids.size() - 1) / (r.timings.decode_ms / 1000.0);
    }
    return r;
}

}  // namespace loom::engine
