//===- TokenizerFiles.h - read tokenizer files into a spec -----*- C++ -*-===//
//
// The files tokenizers ship as:
//   - BERT: vocab.txt (one token per line; the line number is the id);
//   - GPT-2: vocab.json or encoder.json ({token: id}) with merges.txt or
//     vocab.bpe (one "left right" merge per line after a #version line);
//   - Hugging Face tokenizer.json (WordPiece or byte-level BPE models),
//     with tokenizer_config.json's do_lower_case where present.
// No MLIR here: megatron-compile embeds the result in an artifact, and
// megatron-tokenize uses it directly.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_TOKENIZER_TOKENIZERFILES_H
#define MEGATRON_FRONTENDS_TOKENIZER_TOKENIZERFILES_H

#include "megatron/runtime/Status.h"
#include "megatron/runtime/Tokenizer.h"

#include <optional>
#include <string>

namespace megatron {

struct TokenizerFiles {
  std::string vocab;  ///< vocab.txt, vocab.json, encoder.json or tokenizer.json
  std::string merges; ///< merges.txt or vocab.bpe (BPE from vocab.json only)
  /// Lower-case (and strip accents) for WordPiece: nullopt decides from
  /// tokenizer_config.json next to the vocabulary, else from the
  /// vocabulary itself (an uncased one has no upper-case tokens).
  std::optional<bool> lowercase;
};

/// Reads the files into a spec; errors name the file and line.
runtime::Status readTokenizer(const TokenizerFiles &files,
                              runtime::TokenizerSpec &out);

/// Tokenizer files in `dir` (a checkpoint or Hugging Face directory), in
/// order of preference: tokenizer.json, vocab.txt, vocab.json/encoder.json
/// with merges.txt/vocab.bpe. nullopt when there are none.
std::optional<TokenizerFiles> findTokenizerFiles(const std::string &dir);

} // namespace megatron

#endif // MEGATRON_FRONTENDS_TOKENIZER_TOKENIZERFILES_H
