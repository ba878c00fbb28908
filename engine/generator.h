// The generation loop for one request on the batched Engine: detokenize / stop-check each token the
// backend samples, reporting why it stopped and how long each phase took.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "tokenizer/tokenizer.h"

namespace loom::engine {

struct GenerateOptions {
    int max_tokens = 128;
    SamplingParams sampling;
    bool ignore_eos = false;                  // keep going past end-of-generation tokens
    std::vector<std::string> stop_strings;    // matched on the text; the match is not emitted
    int top_logprobs = -1;                    // < 0: no log-probabilities; else this many alternatives
    LayerObserver* layer_observer = nullptr;  // sees every step's layer outputs (--dump-layers)
};

struct GenerateTimings {
    double prompt_ms = 0;  // from the start to the end of the prompt's prefill (its step samples the first token)
    double ttft_ms = 0;    // from the start to the first sampled token (the same moment as prompt_ms)
    double decode_ms = 0;  // from the first to the last sampled token
    double decode_tok_s = 0;
};

struct GenerateResult {
    std::vector<int32_t> ids;                        // generated tokens (an end-of-generation token is not included)
    std::vector<SampledToken> logprobs;              // one per id when options.top_logprobs >= 0
    std::string text;                                // what was emitted (stop string cut off)
    FinishReason finish = FinishReason::max_tokens;  // stop_token, stop_string, max_tokens or context_full
    GenerateTimings timings;
};

// Tokens that end a generation: the vocabulary's EOS and EOT ids, and control tokens whose text is
// a known end-of-turn marker (<|im_end|>, <|eot_id|>, <|end|>, <end_of_turn>, <|endoftext|>, ...).
std::vector<int32_t> end_of_generation_ids(const tokenizer::Tokenizer& tokenizer);

// Runs the request as the only one of a fresh Engine over `backend` (whose KV blocks all belong to
// it for the call): the backend samples, so the CUDA backend copies back one token per step.
// The context bounds prompt + generated tokens (the Engine's context_full). max_tokens == 0 runs
// the prompt's prefill through the Engine's forward pass and samples nothing. `on_text` receives text as
// soon as it is final (never part of a possible stop string, always complete UTF-8). Throws
// RequestError / SamplingParamError before any compute when the request is invalid (an empty
// prompt, one that leaves no room for a generated token, then Engine::add's checks), and
// RequestError with the Engine's message when the request ends in an error (e.g. the KV cache is
// full). No sequence slot outlives the call, also when on_text throws.
GenerateResult generate(Backend& backend, const tokenizer::Tokenizer& tokenizer, std::span<const int32_t> prompt,
                        const GenerateOptions& options, const std::function<void(std::string_view)>& on_text = {});

}  // namespace loom::engine
