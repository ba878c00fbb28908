// libFuzzer target: any body sent to /v1/completions, /v1/chat/completions, /tokenize or /detokenize
// is either accepted or refused with an ApiError (a 4xx naming the field); nothing else (no crash,
// no other exception, no sanitizer report) is acceptable. The model is a small synthetic BPE
// vocabulary with a ChatML template, built here so the target needs no file.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "gguf/writer.h"
#include "tokenizer/test_vocab_builder.h"
#include "worker/openai_api.h"

namespace {

using loom::worker::ApiError;
using loom::worker::Endpoint;
using loom::worker::OpenAiApi;

struct Model {
    loom::test::VocabFile file;
    loom::tokenizer::Tokenizer tokenizer;
    OpenAiApi api;

    static loom::gguf::Writer writer() {
        loom::gguf::Writer w = loom::test::BpeVocab().writer();
        w.set("tokenizer.chat_template",
              loom::gguf::Value::string("{% for m in messages %}<|end|>{{ m['role'] }}\n{{ m['content'] }}<|end|>\n"
                                        "{% endfor %}{% if add_generation_prompt %}<|end|>assistant\n{% endif %}"));
        return w;
    }
    Model()
        : file(loom::test::vocab_file(writer())),
          tokenizer(loom::tokenizer::Tokenizer::from_gguf(*file.file)),
          api(*file.file, tokenizer, "fuzz-model", 256) {}
};

const Model& model() {
    static const auto m = std::make_unique<Model>();
    return *m;
}

template <class F>
void refused_or_accepted(F&& f) {
    try {
        f();
    } catch (const ApiError& e) {
        if (e.status() < 400 || e.status() > 499) std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    const OpenAiApi& api = model().api;
    refused_or_accepted([&] { (void)api.parse(Endpoint::completions, body); });
    refused_or_accepted([&] { (void)api.parse(Endpoint::chat, body); });
    refused_or_accepted([&] { (void)api.tokenize(body); });
    refused_or_accepted([&] { (void)api.detokenize(body); });
    return 0;
}
