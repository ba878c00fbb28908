// Tokenizer: building the models from a vocabulary, encoding (special tokens, pre-tokenization,
// BPE or SentencePiece) and whole-sequence decoding.
#include "tokenizer/tokenizer.h"

#include <spdlog/spdlog.h>

#include <cstdint>

#include "gguf/reader.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace loom::tokenizer {

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // "▁"

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    std::string out;
    out.reserve(s.size());
    for (size_t pos = 0;;) {
        const size_t hit = s.find(from, pos);
        out.append(s.substr(pos, hit - pos));
        if (hit == std::string_view::npos) return out;
        out.append(to);
        pos = hit + from.size();
    }
}

// Control and user-defined tokens hold raw text; byte tokens one byte; the rest is model text:
// byte-level characters (kept raw if a character is outside the alphabet) or "▁"-for-space.
std::string decoded_bytes(const Vocabulary& v, size_t id) {
    const std::string& text = v.tokens[id];
    switch (v.types[id]) {
        case TokenType::Control:
        case TokenType::UserDefined: return text;
        case TokenType::Byte:
            if (const auto b = byte_token_value(text)) return std::string(1, char(*b));
            return text;
        default: break;
    }
    if (v.model == ModelKind::SentencePieceLlama) return replace_all(text, kSpmSpace, " ");
    return byte_level_decode(text).value_or(text);
}

}  // namespace

Tokenizer::Impl::Impl(Vocabulary v) : vocab(std::move(v)), specials(vocab, true), user_defined(vocab, false) {
    if (vocab.model == ModelKind::BytePairGpt2) {
        const PreTokenizerRules rules = rules_for_pre(vocab.pre);
        if (!rules.known)
            spdlog::warn("tokenizer: unknown tokenizer.ggml.pre '{}'; using the GPT-2 pre-tokenizer rules", vocab.pre);
        pre_tokenizer.emplace(rules);
        bpe.emplace(vocab, rules.whole_piece_lookup);
        if (bpe->skipped_merges() > 0)
            spdlog::warn("tokenizer: skipped {} of {} merges that name tokens missing from the vocabulary",
                         bpe->skipped_merges(), vocab.merges.size());
    } else {
        spm.emplace(vocab);
        strip_first_space = vocab.add_space_prefix;
    }
    token_bytes.reserve(vocab.size());
    for (size_t i = 0; i < vocab.size(); ++i) token_bytes.push_back(decoded_bytes(vocab, i));
}

void Tokenizer::Impl::append_decoded(TokenId id, const DecodeOptions& options, bool& seen_text,
                                     std::string& out) const {
    const std::string& bytes = token_bytes[size_t(id)];
    if (vocab.types[size_t(id)] == TokenType::Control) {
        if (!options.skip_control) out += bytes;
        return;
    }
    const bool first = !seen_text;
    seen_text = true;
    if (first && strip_first_space && !options.continuation && bytes.starts_with(' '))
        out.append(bytes, 1);
    else
        out += bytes;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_gguf(const gguf::File& file) {
    return Tokenizer(std::make_unique<Impl>(load_vocabulary(file)));
}

Tokenizer Tokenizer::open(const std::filesystem::path& gguf_path) { return from_gguf(gguf::File::open(gguf_path)); }

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
    std::vector<TokenId> out;
    encode_into(text, out, options);
    return out;
}

void Tokenizer::encode_into(std::string_view text, std::vector<TokenId>& out, const EncodeOptions& options) const {
    const Impl& im = *impl_;
    if (text.size() > UINT32_MAX)
        throw Error("cannot tokenize " + std::to_string(text.size()) + " bytes at once (the limit is 4 GiB)");

    std::unique_lock lock(im.scratch_mutex, std::try_to_lock);
    std::unique_ptr<EncodeScratch> own;
    EncodeScratch& scratch = lock.owns_lock() ? *im.scratch : *(own = std::make_unique<EncodeScratch>());

    // Raw text between special tokens. SentencePiece's dummy prefix goes in front of each such
    // chunk (each starts the input or follows a special token), as SentencePiece encodes chunks.
    const auto encode_text = [&](std::string_view fragment) {
        if (im.spm) {
            im.spm->encode(fragment, im.vocab.add_space_prefix, out, scratch.spm);
            return;
        }
        im.pre_tokenizer->split(fragment, scratch.pieces, scratch.pre);
        for (const Piece& p : scratch.pieces)
            im.bpe->encode_piece(fragment.substr(p.begin, p.end - p.begin), out, scratch.bpe);
    };

    if (options.add_special && im.vocab.add_bos && im.vocab.special.bos) out.push_back(*im.vocab.special.bos);
    const SpecialTokenMatcher& matcher = options.parse_special ? im.specials : im.user_defined;
    for (size_t pos = 0; pos < text.size();) {
        const auto match = matcher.find(text, pos);
        const size_t end = match ? match->begin : text.size();
        if (end > pos) encode_text(text.substr(pos, end - pos));
        if (!match) break;
        out.push_back(match->id);
        pos = match->begin + match->length;
    }
    if (options.add_special && im.vocab.add_eos && im.vocab.special.eos) out.push_back(*im.vocab.special.eos);
}

std::string Tokenizer::decode(std::span<const TokenId> ids, const DecodeOptions& options) const {
    std::string bytes;
    bool seen_text = false;
    for (const TokenId id : ids) {
        impl_->check_id(id);
        impl_->append_decoded(id, options, seen_text, bytes);
    }
    return sanitize_utf8(bytes);
}

ModelKind Tokenizer::model() const { return impl_->vocab.model; }
const std::string& Tokenizer::pre() const { return impl_->vocab.pre; }
size_t Tokenizer::vocab_size() const { return impl_->vocab.size(); }

const std::string& Tokenizer::token_text(TokenId id) const {
    impl_->check_id(id);
    return impl_->vocab.tokens[size_t(id)];
}

TokenType Tokenizer::token_type(TokenId id) const {
    impl_->check_id(id);
    return impl_->vocab.types[size_t(id)];
}

const std::string& Tokenizer::token_bytes(TokenId id) const {
    impl_->check_id(id);
    return impl_->token_bytes[size_t(id)];
}

std::optional<TokenId> Tokenizer::find_token(std::string_view text) const {
    const TokenId* id = impl_->vocab.find(text);
    return id ? std::optional(*id) : std::nullopt;
}

const SpecialTokenIds& Tokenizer::special_ids() const { return impl_->vocab.special; }
bool Tokenizer::add_bos() const { return impl_->vocab.add_bos; }
bool Tokenizer::add_eos() const { return impl_->vocab.add_eos; }
bool Tokenizer::add_space_prefix() const { return impl_->vocab.add_space_prefix; }

}  // namespace loom::tokenizer
