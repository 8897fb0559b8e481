//===- Tokenizers.h - the two tokenizer models ------------------*- C++ -*-===//

#ifndef MEGATRON_RUNTIME_TOKENIZER_TOKENIZERS_H
#define MEGATRON_RUNTIME_TOKENIZER_TOKENIZERS_H

#include "megatron/runtime/Tokenizer.h"

namespace megatron::runtime {
std::unique_ptr<Tokenizer> makeWordPiece(TokenizerSpec spec);
std::unique_ptr<Tokenizer> makeByteLevelBpe(TokenizerSpec spec);
} // namespace megatron::runtime

#endif
