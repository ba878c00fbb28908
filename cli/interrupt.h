// Ctrl-C for `loom run`: SIGINT sets a flag and wakes a line read, so it can stop an answer or be
// seen at the prompt, whichever thread the signal lands on.
#pragma once

#include <string>

namespace loom::cli {

// Installs the SIGINT handler for its lifetime (one at a time); restores the previous one after.
class InterruptWatch {
public:
    InterruptWatch();
    ~InterruptWatch();
    InterruptWatch(const InterruptWatch&) = delete;
    InterruptWatch& operator=(const InterruptWatch&) = delete;

    // Whether SIGINT arrived since the last reset() or take().
    bool interrupted() const;
    void reset();
    // Forgets the SIGINTs so far, as reset(), and says how many there were (two Ctrl-C pressed faster
    // than the program reacts are two).
    int take();
};

// Reads standard input a line at a time, returning early when SIGINT arrives.
class LineReader {
public:
    enum class Result { line, end_of_input, interrupted };
    // `line` gets the text without its newline; a last line without one comes before end_of_input.
    Result read(const InterruptWatch& watch, std::string& line);

private:
    std::string pending_;
    bool eof_ = false;
};

}  // namespace loom::cli
