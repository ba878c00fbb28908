// Chat templates: byte-for-byte agreement with Python jinja2 on real models' templates and on single
// interpreter features (fixtures made by tests/reference/make_chat_template_cases.py), error types
// and locations, depth limits, the ChatML fallback, GGUF special tokens and `loom chat-template`.
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "catch.hpp"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "support/test_data.h"
#include "tokenizer/chat_template.h"

namespace fs = std::filesystem;
namespace jinja = loom::tokenizer::jinja;
using loom::tokenizer::ChatTemplate;
using loom::tokenizer::ChatTemplateInputs;
using nlohmann::ordered_json;

namespace {

fs::path fixture_dir() { return fs::path(LOOM_SOURCE_DIR) / "tests" / "tokenizer" / "chat_templates"; }

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

ordered_json load_fixture(const std::string& name) { return ordered_json::parse(read_file(fixture_dir() / name)); }

std::string render(std::string_view source, const jinja::Variables& vars = {}) {
    return jinja::Template(source).render(vars);
}

// The error of type E that parsing or rendering `source` throws; nullopt when it renders fine.
template <class E>
std::optional<E> error_of(std::string_view source, const jinja::Variables& vars = {}) {
    try {
        render(source, vars);
    } catch (const E& e) {
        return e;
    }
    return std::nullopt;
}

ChatTemplateInputs inputs_of(const ordered_json& c) {
    ChatTemplateInputs in;
    in.messages = c.at("messages");
    in.add_generation_prompt = c.at("add_generation_prompt").get<bool>();
    in.bos_token = c.at("bos_token").get<std::string>();
    in.eos_token = c.at("eos_token").get<std::string>();
    in.extra = c.at("extra");
    return in;
}

// A metadata-only GGUF with a three-token vocabulary (<unk> <s> </s>) and an optional template.
std::vector<uint8_t> tiny_gguf(const std::optional<std::string>& chat_template) {
    loom::gguf::Writer w;
    w.set("general.architecture", loom::gguf::Value::string("llama"));
    w.set("tokenizer.ggml.model", loom::gguf::Value::string("llama"));
    w.set("tokenizer.ggml.tokens", loom::gguf::Value::string_array({"<unk>", "<s>", "</s>"}));
    w.set("tokenizer.ggml.bos_token_id", loom::gguf::Value::u32(1));
    w.set("tokenizer.ggml.eos_token_id", loom::gguf::Value::u32(2));
    if (chat_template) w.set("tokenizer.chat_template", loom::gguf::Value::string(*chat_template));
    return w.header_bytes();
}

fs::path write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return path;
}

struct CommandResult {
    int exit_code;
    std::string output;
};

CommandResult run_command(const std::string& command) {
    FILE* pipe = popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string output;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
    const int status = pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace

TEST_CASE("real chat templates render exactly as Python jinja2 does", "[tokenizer][chat_template]") {
    const auto doc = load_fixture("cases.json");
    std::map<std::string, std::unique_ptr<ChatTemplate>> templates;
    size_t rendered = 0, raised = 0;
    for (const auto& c : doc.at("cases")) {
        const std::string name = c.at("template").get<std::string>();
        INFO("case " << c.at("name").get<std::string>());
        auto& t = templates[name];
        if (!t) t = std::make_unique<ChatTemplate>(read_file(fixture_dir() / (name + ".jinja")));
        const auto in = inputs_of(c);
        if (c.contains("expected_error")) {
            try {
                t->render(in);
                FAIL("expected raise_exception(" << c.at("expected_error") << ")");
            } catch (const jinja::RaisedException& e) {
                CHECK(e.message() == c.at("expected_error").get<std::string>());
                ++raised;
            }
        } else {
            CHECK(t->render(in) == c.at("expected").get<std::string>());
            ++rendered;
        }
    }
    CHECK(templates.size() >= 8);
    CHECK(rendered >= templates.size() * 4);
    CHECK(raised > 0);
}

TEST_CASE("interpreter features render exactly as Python jinja2 does", "[tokenizer][jinja]") {
    const auto doc = load_fixture("feature_cases.json");
    for (const auto& c : doc.at("cases")) {
        INFO("feature " << c.at("name").get<std::string>() << ": " << c.at("template").get<std::string>());
        jinja::Variables vars;
        for (const auto& [key, value] : c.at("context").items())
            vars.emplace_back(key, loom::tokenizer::to_jinja_value(value));
        CHECK(render(c.at("template").get<std::string>(), vars) == c.at("expected").get<std::string>());
    }
}

TEST_CASE("variables pass through and override the defaults", "[tokenizer][chat_template]") {
    const ChatTemplate t(
        "{{ tools is none }}|{{ documents is none }}|{{ date_string | default('none') }}|{{ bos_token }}{{ eos_token "
        "}}|"
        "{{ messages[0].content }}|{{ messages[0].extra.k }}|{{ custom }}");
    ChatTemplateInputs in;
    in.messages = ordered_json::parse(R"([{"role": "user", "content": "héllo", "extra": {"k": [1, 2.5, null]}}])");
    in.bos_token = "<s>";
    in.eos_token = "</s>";
    CHECK(t.render(in) == "True|True|none|<s></s>|héllo|[1, 2.5, None]|");
    in.extra = ordered_json::parse(R"({"date_string": "01 Jan 2025", "tools": [], "custom": true})");
    CHECK(t.render(in) == "False|True|01 Jan 2025|<s></s>|héllo|[1, 2.5, None]|True");
}

TEST_CASE("strftime_now formats the current local time", "[tokenizer][chat_template]") {
    const ChatTemplate t("{{ strftime_now('%Y') }}");
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    CHECK(t.render({}) == std::to_string(local.tm_year + 1900));
}

TEST_CASE("raise_exception becomes a typed error carrying the message and location", "[tokenizer][chat_template]") {
    const ChatTemplate t(
        "{% if messages | length == 0 %}\n  {{- raise_exception('no messages: \"x\" \\u00e9') }}\n{% endif %}ok");
    ChatTemplateInputs one_message;
    one_message.messages = ordered_json::parse(R"([{"role": "user", "content": "a"}])");
    CHECK(t.render(one_message) == "ok");
    try {
        t.render({});
        FAIL("expected RaisedException");
    } catch (const jinja::RaisedException& e) {
        CHECK(e.message() == "no messages: \"x\" é");
        CHECK(e.location().line == 2);
        CHECK(e.location().column == 7);
        CHECK(std::string(e.what()) == "2:7: no messages: \"x\" é");
    }
}

TEST_CASE("syntax errors are typed and name line and column", "[tokenizer][jinja]") {
    auto e = error_of<jinja::SyntaxError>("Hello\n{{ foo( }}");
    REQUIRE(e);
    CHECK(e->location().line == 2);
    CHECK(e->location().column == 9);
    CHECK(e->message() == "unexpected '}', expected ')'");

    e = error_of<jinja::SyntaxError>("{% if x %}\nnever closed");
    REQUIRE(e);
    CHECK(e->location().line == 1);
    CHECK(e->location().column == 1);
    CHECK_THAT(e->message(), loom::test::contains("'if'") && loom::test::contains("'endif'"));

    e = error_of<jinja::SyntaxError>("x\n{% endfor %}");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "2:1: unexpected 'endfor' tag");

    e = error_of<jinja::SyntaxError>("{% foo %}");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "1:1: unknown tag 'foo'");

    e = error_of<jinja::SyntaxError>("{{ 'unterminated }}");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "1:4: unterminated string literal");

    e = error_of<jinja::SyntaxError>("{% break %}");
    REQUIRE(e);
    CHECK_THAT(e->message(), loom::test::contains("outside of a loop"));

    e = error_of<jinja::SyntaxError>("{{ }}");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "1:4: expected an expression, got end of print statement");

    e = error_of<jinja::SyntaxError>("{# never closed");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "1:1: missing end of comment tag");
}

TEST_CASE("unknown filters and tests are typed errors at their name", "[tokenizer][jinja]") {
    auto e = error_of<jinja::UnknownFilterError>("ab {{ x|nosuchfilter }}");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "1:9: no filter named 'nosuchfilter'");
    e = error_of<jinja::UnknownFilterError>("{{ x is nosuchtest }}");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "1:9: no test named 'nosuchtest'");
    e = error_of<jinja::UnknownFilterError>("{% set x | nope %}{% endset %}");
    REQUIRE(e);
    CHECK(e->location().column == 12);
}

TEST_CASE("render errors are typed and name line and column", "[tokenizer][jinja]") {
    auto e = error_of<jinja::RenderError>("line1\n  {{ 1 + 'a' }}");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "2:8: unsupported operand type(s) for +: 'int' and 'str'");

    e = error_of<jinja::RenderError>("{{ undefined_var.attr }}");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "1:17: 'undefined_var' is undefined");

    e = error_of<jinja::RenderError>("é {{ 1 + none }}");  // columns count code points
    REQUIRE(e);
    CHECK(e->location().column == 8);

    e = error_of<jinja::RenderError>("{{ messages[0]['role'] }}", {{"messages", jinja::Value::list()}});
    REQUIRE(e);
    CHECK(e->message() == "'list object' has no element 0");

    e = error_of<jinja::RenderError>("{{ 'a'() }}");
    REQUIRE(e);
    CHECK(e->message() == "'str' object is not callable");

    e = error_of<jinja::RenderError>("{{ 'a' < 1 }}");
    REQUIRE(e);
    CHECK(e->message() == "'<' not supported between instances of 'str' and 'int'");

    e = error_of<jinja::RenderError>("{% for x in 3 %}{% endfor %}");
    REQUIRE(e);
    CHECK(e->message() == "'int' object is not iterable");

    e = error_of<jinja::RenderError>("{{ 1 // 0 }}");
    REQUIRE(e);
    CHECK(e->message() == "integer division or modulo by zero");

    e = error_of<jinja::RenderError>("{{ [1]|tojson }}{{ u|tojson }}");
    REQUIRE(e);
    CHECK(e->message() == "Object of type Undefined is not JSON serializable");

    e = error_of<jinja::RenderError>("{% set x = 1 %}{% set x.a = 2 %}");
    REQUIRE(e);
    CHECK_THAT(e->message(), loom::test::contains("non-namespace"));
}

TEST_CASE("hostile templates hit limits instead of exhausting the stack or memory", "[tokenizer][jinja]") {
    const std::string parens = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
    CHECK(error_of<jinja::SyntaxError>(parens));
    std::string ifs;
    for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
    CHECK(error_of<jinja::SyntaxError>(ifs));
    std::string chain = "{{ 1";
    for (int i = 0; i < 5000; ++i) chain += " + 1";
    CHECK(error_of<jinja::SyntaxError>(chain + " }}"));
    std::string filters = "{{ 'x'";
    for (int i = 0; i < 5000; ++i) filters += "|trim";
    CHECK(error_of<jinja::SyntaxError>(filters + " }}"));
    CHECK(error_of<jinja::SyntaxError>("{{ " + std::string(5000, '-') + "1 }}"));
    CHECK(error_of<jinja::SyntaxError>("{{ " + std::string(5000, '[') + std::string(5000, ']') + " }}"));

    auto e = error_of<jinja::RenderError>("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
    REQUIRE(e);
    CHECK_THAT(e->message(), loom::test::contains("depth"));
    e = error_of<jinja::RenderError>("{{ range(1000000)|length }}");
    REQUIRE(e);
    CHECK_THAT(e->message(), loom::test::contains("Range too big"));
    CHECK(error_of<jinja::RenderError>("{{ 'ab' * 10000000000 }}"));
    CHECK(error_of<jinja::RenderError>("{{ 9223372036854775807 + 1 }}"));

    // Within the limits nesting still works.
    CHECK(render("{{ " + std::string(40, '(') + "7" + std::string(40, ')') + " }}") == "7");
}

TEST_CASE("a model without a template falls back to ChatML with a warning", "[tokenizer][chat_template]") {
    const auto bytes = tiny_gguf(std::nullopt);
    const auto file = loom::gguf::File::parse(bytes);
    auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(8);
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
    const auto t = ChatTemplate::from_gguf(file);
    spdlog::set_default_logger(previous);
    CHECK(t.is_chatml_fallback());
    CHECK(t.source() == loom::tokenizer::chatml_template());
    const auto logged = sink->last_formatted();
    REQUIRE(logged.size() == 1);
    CHECK_THAT(logged[0], loom::test::contains("ChatML") && loom::test::contains("warning"));

    ChatTemplateInputs in;
    in.messages =
        ordered_json::parse(R"([{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi é"}])");
    CHECK(t.render(in) == "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi é<|im_end|>\n");
    in.add_generation_prompt = true;
    CHECK(t.render(in) ==
          "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi é<|im_end|>\n<|im_start|>assistant\n");

    const auto tokens = loom::tokenizer::special_token_strings(file);
    CHECK(tokens.bos == "<s>");
    CHECK(tokens.eos == "</s>");
}

TEST_CASE("a model's own template comes from tokenizer.chat_template", "[tokenizer][chat_template]") {
    const auto bytes = tiny_gguf("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{% endfor %}");
    const auto file = loom::gguf::File::parse(bytes);
    const auto t = ChatTemplate::from_gguf(file);
    CHECK_FALSE(t.is_chatml_fallback());
    ChatTemplateInputs in;
    in.messages = ordered_json::parse(R"([{"role": "user", "content": ""}])");
    in.bos_token = "<s>";
    CHECK(t.render(in) == "<s>[user]");
}

TEST_CASE("SmolLM2's GGUF template and special tokens", "[tokenizer][chat_template][smollm2]") {
    const char* cache = std::getenv("LOOM_MODEL_CACHE");
    const fs::path path = fs::path(cache && *cache ? cache : "test-models/cache") / "SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!fs::exists(path)) {
        WARN("skipped: " << path << " is missing (test-models/fetch smollm2-135m-instruct-q4_1)");
        return;
    }
    const auto file = loom::gguf::File::open(path);
    const auto t = ChatTemplate::from_gguf(file);
    CHECK(t.source() == read_file(fixture_dir() / "smollm2.jinja"));
    const auto tokens = loom::tokenizer::special_token_strings(file);
    CHECK(tokens.bos == "<|im_start|>");
    CHECK(tokens.eos == "<|im_end|>");
    const auto doc = load_fixture("cases.json");
    for (const auto& c : doc.at("cases"))
        if (c.at("template") == "smollm2") CHECK(t.render(inputs_of(c)) == c.at("expected").get<std::string>());
}

TEST_CASE("loom chat-template prints the prompt exactly and fails cleanly", "[tokenizer][chat_template][cli]") {
    const char* bin = std::getenv("LOOM_BIN");
    if (!bin || !*bin || !fs::exists(bin)) {
        WARN("skipped: LOOM_BIN does not name the loom binary");
        return;
    }
    const fs::path dir = loom::test::temp_dir();
    const auto chatml = write_bytes(dir / "chatml.gguf", tiny_gguf(std::nullopt));
    const auto raising = write_bytes(dir / "raising.gguf", tiny_gguf("{{ raise_exception('no system role') }}"));
    const auto broken = write_bytes(dir / "broken.gguf", tiny_gguf("{% for %}"));
    const std::string loom = std::string("'") + bin + "' chat-template -m ";
    const std::string messages = R"( --messages '[{"role": "user", "content": "hi \"é\"\n"}]')";

    auto r = run_command(loom + chatml.string() + messages + " --add-generation-prompt 2>/dev/null");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "<|im_start|>user\nhi \"é\"\n<|im_end|>\n<|im_start|>assistant\n");
    r = run_command(loom + chatml.string() + messages + " 2>/dev/null");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "<|im_start|>user\nhi \"é\"\n<|im_end|>\n");

    r = run_command(loom + chatml.string() + " --messages '[{' 2>&1");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.output, loom::test::contains("not valid JSON"));
    r = run_command(loom + chatml.string() + " --messages '{\"role\": \"user\"}' 2>&1");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.output, loom::test::contains("JSON array"));
    r = run_command(loom + raising.string() + messages + " 2>&1");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.output, loom::test::contains("1:4: no system role"));
    r = run_command(loom + broken.string() + messages + " 2>&1");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.output, loom::test::contains("1:8"));
}
