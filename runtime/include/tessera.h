/*
 * tessera.h - public C API of the Tessera multimodal runtime.
 *
 * Conventions (they hold for every function below unless its comment says otherwise):
 *  - Fallible functions return tsr_status. TSR_OK (0) is success.
 *  - Objects come back through out-pointers; on failure those are left zeroed/NULL.
 *  - Every fallible function takes a caller-owned `tsr_error *err` as its last argument.
 *    It may be NULL. On failure it receives the status and a detail message that starts
 *    with the function name and names the argument, the limit or both shapes.
 *  - Whoever creates an object frees it with the matching tsr_X_free(); freeing NULL or a
 *    zeroed value object is a no-op.
 *  - Inputs are borrowed for the duration of the call unless stated otherwise.
 *  - Functions are thread-safe when called on distinct objects.
 */
#ifndef TESSERA_H
#define TESSERA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------ */
/* Errors                                                                                 */
/* ------------------------------------------------------------------------------------ */

/* X(name, description). Append-only: the numeric values are part of the ABI. */
#define TSR_STATUS_LIST(X)                                                   \
    X(OK, "success")                                                         \
    X(ERR_INVALID_ARG, "invalid argument")                                   \
    X(ERR_SHAPE, "tensor shape mismatch")                                    \
    X(ERR_LIMIT, "a configured limit was exceeded")                          \
    X(ERR_FORMAT, "malformed or corrupt input data")                         \
    X(ERR_UNSUPPORTED, "unsupported feature or format")                      \
    X(ERR_IO, "input/output error")                                          \
    X(ERR_OOM, "out of memory")                                              \
    X(ERR_DEVICE, "accelerator device error")                                \
    X(ERR_CANCELLED, "operation cancelled")                                  \
    X(ERR_INTERNAL, "internal error")

typedef enum tsr_status {
#define TSR__STATUS_ENUM(name, desc) TSR_##name,
    TSR_STATUS_LIST(TSR__STATUS_ENUM)
#undef TSR__STATUS_ENUM
    TSR_STATUS_COUNT
} tsr_status;

/* Static description ("malformed or corrupt input data"); never NULL. */
const char *tsr_status_str(tsr_status status);
/* Static symbolic name ("TSR_ERR_FORMAT"); never NULL ("TSR_ERR_UNKNOWN" if out of range). */
const char *tsr_status_name(tsr_status status);

#define TSR_ERROR_MSG_MAX 512

/* Caller-owned error detail. Zero-initialise it, pass its address; it is overwritten by
 * each failing call and left untouched by successful ones. */
typedef struct tsr_error {
    tsr_status status;
    char message[TSR_ERROR_MSG_MAX];
} tsr_error;

/* ------------------------------------------------------------------------------------ */
/* Limits                                                                                 */
/* ------------------------------------------------------------------------------------ */

/* Security limits applied while decoding untrusted media. Checked from headers before
 * any pixel or sample buffer is allocated. A field of 0 means "no limit" for that field. */
typedef struct tsr_limits {
    size_t size;                /* sizeof(tsr_limits), set by tsr_limits_default() */
    uint64_t max_encoded_bytes; /* encoded image or audio size; default 20 MiB */
    uint64_t max_pixels;        /* decoded image width*height; default 40,000,000 */
    int32_t max_side;           /* decoded image width and height; default 16384 */
    double max_aspect;          /* max(w,h)/min(w,h); default 200 */
    double max_audio_seconds;   /* audio duration; default 600 */
    int32_t max_audio_channels; /* default 8 */
} tsr_limits;

tsr_limits tsr_limits_default(void);

/* ------------------------------------------------------------------------------------ */
/* Tensors                                                                                */
/* ------------------------------------------------------------------------------------ */

typedef enum tsr_dtype {
    TSR_DTYPE_U8 = 0,
    TSR_DTYPE_I32,
    TSR_DTYPE_I64,
    TSR_DTYPE_F16,
    TSR_DTYPE_BF16,
    TSR_DTYPE_F32,
    TSR_DTYPE_COUNT
} tsr_dtype;

#define TSR_MAX_DIMS 6

/* One tensor descriptor. Strides are in elements. `owner` non-zero means `data` was
 * allocated by Tessera and is released by tsr_tensor_free(); otherwise it is borrowed. */
typedef struct tsr_tensor {
    tsr_dtype dtype;
    int32_t ndim;
    int64_t shape[TSR_MAX_DIMS];
    int64_t strides[TSR_MAX_DIMS];
    void *data;
    int32_t owner;
} tsr_tensor;

size_t tsr_dtype_size(tsr_dtype dtype);     /* bytes per element; 0 if unknown */
const char *tsr_dtype_name(tsr_dtype dtype); /* safetensors spelling: "U8","I32","F32",... */

/* Allocates a zero-filled contiguous tensor. Fails with LIMIT on size overflow, OOM. */
tsr_status tsr_tensor_alloc(tsr_tensor *out, tsr_dtype dtype, int32_t ndim,
                            const int64_t *shape, tsr_error *err);
/* Describes borrowed contiguous memory as a tensor (no allocation). */
tsr_status tsr_tensor_view(tsr_tensor *out, tsr_dtype dtype, int32_t ndim,
                           const int64_t *shape, void *data, tsr_error *err);
/* Releases owned storage and zeroes the descriptor. */
void tsr_tensor_free(tsr_tensor *t);
int64_t tsr_tensor_numel(const tsr_tensor *t);
size_t tsr_tensor_nbytes(const tsr_tensor *t);
int tsr_tensor_is_contiguous(const tsr_tensor *t);
/* Checks dtype, rank and dims against `shape` (a dim of -1 matches anything). On mismatch
 * returns SHAPE with "<fn>: <what> has shape [a, b] F32, expected [c, -1] F32". */
tsr_status tsr_tensor_check(const tsr_tensor *t, const char *what, tsr_dtype dtype,
                            int32_t ndim, const int64_t *shape, tsr_error *err);

/* ------------------------------------------------------------------------------------ */
/* Media kind                                                                             */
/* ------------------------------------------------------------------------------------ */

typedef enum tsr_media_kind {
    TSR_MEDIA_UNKNOWN = 0,
    TSR_MEDIA_IMAGE,
    TSR_MEDIA_AUDIO
} tsr_media_kind;

/* Guesses the kind of an encoded buffer from its magic bytes (PNG, JPEG; RIFF/WAVE, FLAC,
 * Ogg, MP3, AIFF, AU, W64, CAF). No decoding; never fails. */
tsr_media_kind tsr_media_sniff(const uint8_t *buf, size_t len);

/* ------------------------------------------------------------------------------------ */
/* Named tensor lists (processor outputs, safetensors contents)                          */
/* ------------------------------------------------------------------------------------ */

/* An ordered list of uniquely named tensors, as a Hugging Face processor returns them
 * ("input_ids", "pixel_values", ...). The list owns the tensors added to it. */
typedef struct tsr_tensor_list tsr_tensor_list;

tsr_status tsr_tensor_list_new(tsr_tensor_list **out /* OUT */, tsr_error *err);
void tsr_tensor_list_free(tsr_tensor_list *list);
/* Moves *t into the list under `name` (copied); on success *t is zeroed. On failure *t is
 * left to the caller. A repeated name is INVALID_ARG. */
tsr_status tsr_tensor_list_add(tsr_tensor_list *list, const char *name, tsr_tensor *t,
                               tsr_error *err);
int64_t tsr_tensor_list_count(const tsr_tensor_list *list);
/* Name and tensor at index i (insertion order); NULL when out of range. */
const char *tsr_tensor_list_name(const tsr_tensor_list *list, int64_t i);
const tsr_tensor *tsr_tensor_list_at(const tsr_tensor_list *list, int64_t i);
/* Tensor named `name`, or NULL. Valid until the list is freed. */
const tsr_tensor *tsr_tensor_list_get(const tsr_tensor_list *list, const char *name);
/* Writes every tensor of the list, in order, to a safetensors file. */
tsr_status tsr_tensor_list_save(const tsr_tensor_list *list, const char *path, tsr_error *err);

/* ------------------------------------------------------------------------------------ */
/* Images                                                                                 */
/* ------------------------------------------------------------------------------------ */

typedef enum tsr_image_format {
    TSR_IMAGE_FORMAT_UNKNOWN = 0,
    TSR_IMAGE_FORMAT_PNG,
    TSR_IMAGE_FORMAT_JPEG
} tsr_image_format;

const char *tsr_image_format_name(tsr_image_format f); /* "png", "jpeg", "unknown" */

/* Decoded 8-bit image, rows top to bottom, tightly packed (stride = width*channels). */
typedef struct tsr_image {
    int32_t width;
    int32_t height;
    int32_t channels; /* 3 = RGB, 4 = RGBA */
    uint8_t *data;    /* owned; released by tsr_image_free() */
} tsr_image;

/* Facts from the encoded file. width/height are after the EXIF orientation is applied. */
typedef struct tsr_image_info {
    tsr_image_format format;
    int32_t width;
    int32_t height;
    int32_t orientation;  /* EXIF orientation 1..8 (1 when absent) */
    int32_t bit_depth;    /* per sample in the file */
    int32_t channels;     /* in the file: 1 gray, 2 gray+alpha, 3 color, 4 color+alpha/CMYK */
    int32_t has_alpha;    /* alpha channel or transparency chunk present */
    char mode[8];         /* the mode Pillow opens the file in: "L", "RGB", "P", "CMYK", ... */
} tsr_image_info;

typedef struct tsr_image_decode_params {
    size_t size;            /* sizeof(tsr_image_decode_params) */
    int32_t channels;       /* 3: RGB as Pillow convert("RGB"); 4: RGBA as convert("RGBA") */
    int32_t apply_exif;     /* non-zero: apply EXIF orientation as ImageOps.exif_transpose */
    tsr_limits limits;
} tsr_image_decode_params;

tsr_image_decode_params tsr_image_decode_params_default(void);

/* Reads only the header: format, size, orientation. Applies the limits. */
tsr_status tsr_image_probe(const uint8_t *buf, size_t len, const tsr_image_decode_params *params,
                           tsr_image_info *info /* OUT */, tsr_error *err);

/* Decodes PNG or JPEG (sniffed from magic bytes) to RGB8/RGBA8 pixels equal to Pillow's.
 * params may be NULL (defaults). info may be NULL. */
tsr_status tsr_image_decode(const uint8_t *buf, size_t len, const tsr_image_decode_params *params,
                            tsr_image *out /* OUT */, tsr_image_info *info /* OUT */,
                            tsr_error *err);

/* Allocates an uninitialised image. */
tsr_status tsr_image_alloc(tsr_image *out, int32_t width, int32_t height, int32_t channels,
                           tsr_error *err);
void tsr_image_free(tsr_image *img);

/* Composites RGBA over opaque white and drops alpha, exactly as transformers'
 * convert_rgb (Pillow alpha_composite): out = floor((c*a + 255*(255-a))/255 + 0.5).
 * An RGB input is copied unchanged. */
tsr_status tsr_image_composite_white(const tsr_image *src, tsr_image *out /* OUT */,
                                     tsr_error *err);

/* ------------------------------------------------------------------------------------ */
/* Image operations (bit-exact with Pillow / transformers)                               */
/* ------------------------------------------------------------------------------------ */

/* Pillow's numbering, as stored in preprocessor configs ("resample": 3). */
typedef enum tsr_resample {
    TSR_RESAMPLE_NEAREST = 0,
    TSR_RESAMPLE_LANCZOS = 1,
    TSR_RESAMPLE_BILINEAR = 2,
    TSR_RESAMPLE_BICUBIC = 3
} tsr_resample;

/* Pillow Image.resize((width, height), filter) on RGB8/RGBA8, bit-identical: separable,
 * horizontal pass first, 8-bit intermediate, antialiased when reducing, 22-bit fixed point. */
tsr_status tsr_image_resize(const tsr_image *src, int32_t width, int32_t height,
                            tsr_resample filter, tsr_image *out /* OUT */, tsr_error *err);

/* Copies the rectangle [x, x+width) x [y, y+height); it must lie inside src. */
tsr_status tsr_image_crop(const tsr_image *src, int32_t x, int32_t y, int32_t width,
                          int32_t height, tsr_image *out /* OUT */, tsr_error *err);

/* New width x height image filled with `fill` (one byte per channel), src placed at
 * (x, y); parts of src outside the canvas are clipped. */
tsr_status tsr_image_pad(const tsr_image *src, int32_t width, int32_t height, int32_t x,
                         int32_t y, const uint8_t *fill, tsr_image *out /* OUT */,
                         tsr_error *err);

/* transformers.image_transforms.center_crop: top = (h - ch) // 2, left = (w - cw) // 2;
 * a crop larger than the image zero-pads it, centred the same way. */
tsr_status tsr_image_center_crop(const tsr_image *src, int32_t width, int32_t height,
                                 tsr_image *out /* OUT */, tsr_error *err);

/* Rescale and normalise to float32 as transformers' slow path does:
 *   x = (float)((double)u8 * rescale)          if do_rescale
 *   y = (x - (float)mean[c]) / (float)std[c]    if do_normalize, in float32
 * Output layout: channels-first [C, H, W] written to `dst` (C*H*W floats). */
typedef struct tsr_normalize_params {
    size_t size;
    int32_t do_rescale;
    double rescale;     /* usually 1/255 */
    int32_t do_normalize;
    double mean[4];
    double std[4];
} tsr_normalize_params;

tsr_status tsr_image_normalize(const tsr_image *src, const tsr_normalize_params *params,
                               float *dst, size_t dst_len, tsr_error *err);

/* Splits src into rows x cols equal tiles in row-major order (tile i = row i/cols,
 * column i%cols); width and height must be divisible. `out` holds rows*cols images. */
tsr_status tsr_image_split_tiles(const tsr_image *src, int32_t rows, int32_t cols,
                                 tsr_image *out /* OUT: rows*cols */, tsr_error *err);

/* ------------------------------------------------------------------------------------ */
/* Audio                                                                                  */
/* ------------------------------------------------------------------------------------ */

/* Mono float32 PCM. */
typedef struct tsr_audio {
    int32_t sample_rate;
    int64_t n_samples;
    float *samples; /* owned; released by tsr_audio_free() */
} tsr_audio;

/* Header facts, before any mixing or resampling. */
typedef struct tsr_audio_info {
    char format[16]; /* "wav" (also WAVEX/RF64), "w64", "aiff", "au", "caf", "flac", "ogg", "mp3" */
    int32_t sample_rate;
    int32_t channels;
    int64_t frames;    /* -1 from tsr_audio_probe when the file does not say (an Ogg stream cut
                          short); tsr_audio_decode then reports the frames it decoded */
    double duration_s; /* frames / sample_rate; -1 when frames is -1 */
} tsr_audio_info;

typedef struct tsr_audio_decode_params {
    size_t size;
    int32_t sample_rate; /* target rate (libsoxr HQ, as librosa); 0 keeps the file's rate */
    tsr_limits limits;
} tsr_audio_decode_params;

tsr_audio_decode_params tsr_audio_decode_params_default(void); /* 16 kHz */

/* Decodes WAV/FLAC/OGG/MP3 (what libsndfile supports) from memory, averages channels to
 * mono, resamples to params->sample_rate as librosa.load(sr=...) does (soundfile float32
 * decode, float32 channel mean, libsoxr HQ, length ceil(frames * out / in)).
 * Accepted: WAV/WAVEX/RF64, W64, AIFF, AU, CAF, FLAC, Ogg (Vorbis, Opus) and MP3 when the
 * system libsndfile has it (otherwise UNSUPPORTED, saying so); PCM 8..32 bit, float, double,
 * u-law, A-law. Other codecs (ADPCM, GSM, G.72x, ...) and file rates outside 1000..768000 Hz
 * are UNSUPPORTED. Corrupt or truncated headers, no decodable frames and non-finite samples
 * (also after resampling) are FORMAT. params->limits (encoded bytes, channels, seconds; 0 =
 * no limit) give LIMIT, checked from the header before allocating and again while decoding.
 * Thread-safe. */
tsr_status tsr_audio_decode(const uint8_t *buf, size_t len, const tsr_audio_decode_params *params,
                            tsr_audio *out /* OUT */, tsr_audio_info *info /* OUT, may be NULL */,
                            tsr_error *err);
/* Reads only the header (same checks as tsr_audio_decode, except those on the samples). */
tsr_status tsr_audio_probe(const uint8_t *buf, size_t len, const tsr_audio_decode_params *params,
                           tsr_audio_info *info /* OUT */, tsr_error *err);
void tsr_audio_free(tsr_audio *audio);

/* Whisper log-mel spectrogram (WhisperFeatureExtractor): n_fft 400, hop 160, periodic Hann,
 * reflect padding, Slaney mel filters, log10 / max-8 clamp / (x+4)/4.
 * pad_to_samples > 0: truncate or zero-pad to that many samples first (480000 = 30 s) and
 * emit pad_to_samples/160 frames; 0: no fixed padding, emit n_samples/160 frames (needs
 * n_samples > 200 for the reflect padding). Output: F32 [n_mels, frames], at most 10^6
 * frames (LIMIT). Matches the torch path of transformers within 1e-4 abs. params may be
 * NULL (80 mels, 16 kHz, 30 s). Thread-safe (one FFTW plan, created under a lock). */
typedef struct tsr_logmel_params {
    size_t size;
    int32_t n_mels;          /* 80 or 128 (any 1..256 accepted) */
    int32_t sample_rate;     /* 16000 */
    int64_t pad_to_samples;  /* 480000 by default */
} tsr_logmel_params;

tsr_logmel_params tsr_logmel_params_default(void);

tsr_status tsr_logmel(const float *samples, int64_t n_samples, const tsr_logmel_params *params,
                      tsr_tensor *out /* OUT: owned F32 [n_mels, frames] */, tsr_error *err);

/* ------------------------------------------------------------------------------------ */
/* safetensors                                                                           */
/* ------------------------------------------------------------------------------------ */

typedef struct tsr_safetensors tsr_safetensors;

/* Parses and validates a safetensors image held in memory (borrowed: it must outlive the
 * handle). Header length bound, well-formed JSON, known dtypes, byte size = dtype x shape
 * without overflow, offsets inside the data section, no overlaps, no duplicate names. */
tsr_status tsr_safetensors_open_memory(const uint8_t *buf, size_t len,
                                       tsr_safetensors **out /* OUT */, tsr_error *err);
/* Maps the file read-only and parses it. */
tsr_status tsr_safetensors_open_file(const char *path, tsr_safetensors **out /* OUT */,
                                     tsr_error *err);
void tsr_safetensors_close(tsr_safetensors *st);
int64_t tsr_safetensors_count(const tsr_safetensors *st);
/* Name of tensor i (header order); NULL if out of range. Valid until close. */
const char *tsr_safetensors_name(const tsr_safetensors *st, int64_t i);
/* Borrowed view of a tensor's data (valid until close). NOT_FOUND is INVALID_ARG. */
tsr_status tsr_safetensors_get(const tsr_safetensors *st, const char *name,
                               tsr_tensor *out /* OUT: borrowed view */, tsr_error *err);
/* "__metadata__" string value, or NULL. */
const char *tsr_safetensors_metadata(const tsr_safetensors *st, const char *key);

/* Writes tensors (contiguous) under `names` to `path`. metadata: n_meta key/value pairs
 * (keys[i], values[i]), may be 0. */
tsr_status tsr_safetensors_write_file(const char *path, int64_t n, const char *const *names,
                                      const tsr_tensor *tensors, int64_t n_meta,
                                      const char *const *meta_keys,
                                      const char *const *meta_values, tsr_error *err);

/* ------------------------------------------------------------------------------------ */
/* Tokenizer                                                                              */
/* ------------------------------------------------------------------------------------ */

/* A Hugging Face `tokenizer.json` tokenizer (BPE model; byte-level or SentencePiece style with
 * byte fallback), equal to the `tokenizers` library: same ids, same decoded text.
 * Supported components: normalizers NFC/NFD/NFKC/NFKD, Lowercase, Prepend, Replace, Strip,
 * StripAccents, Sequence; pre-tokenizers Split (PCRE2, all behaviours, invert), ByteLevel,
 * Metaspace, Digits, Sequence; post-processors TemplateProcessing, ByteLevel, Sequence;
 * decoders ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence. Anything else
 * fails to load with UNSUPPORTED naming it.
 * A loaded tokenizer is immutable: every function taking a `const tsr_tokenizer *` may be
 * called from several threads at once. */
typedef struct tsr_tokenizer tsr_tokenizer;

/* Loads model_dir/tokenizer.json, plus tokenizer_config.json and special_tokens_map.json when
 * present (bos/eos/pad/unk names, added_tokens_decoder entries missing from tokenizer.json). */
tsr_status tsr_tokenizer_load(const char *model_dir, tsr_tokenizer **out /* OUT */,
                              tsr_error *err);
/* Same from memory. config_json and special_tokens_map_json may be NULL. Buffers are
 * borrowed for the call. */
tsr_status tsr_tokenizer_load_memory(const char *tokenizer_json, size_t len,
                                     const char *config_json, size_t config_len,
                                     const char *special_tokens_map_json, size_t map_len,
                                     tsr_tokenizer **out /* OUT */, tsr_error *err);
void tsr_tokenizer_free(tsr_tokenizer *tok);

/* Token ids owned by the caller; release with tsr_token_ids_free(). */
typedef struct tsr_token_ids {
    int32_t *ids;
    size_t n;
} tsr_token_ids;

void tsr_token_ids_free(tsr_token_ids *ids);

/* Encodes UTF-8 text (len bytes; may contain NUL). Added/special tokens written in the text
 * are always recognised; add_special_tokens != 0 also applies the post-processor template
 * (e.g. BOS). Invalid UTF-8 is INVALID_ARG. */
tsr_status tsr_tokenizer_encode(const tsr_tokenizer *tok, const char *text, size_t len,
                                int add_special_tokens, tsr_token_ids *out /* OUT */,
                                tsr_error *err);

/* Decodes ids to UTF-8 (*text is NUL-terminated, owned by the caller, released with
 * tsr_tokenizer_text_free()). skip_special_tokens != 0 drops added tokens marked special.
 * An id outside [0, tsr_tokenizer_vocab_size()) or naming no token is INVALID_ARG. */
tsr_status tsr_tokenizer_decode(const tsr_tokenizer *tok, const int32_t *ids, size_t n,
                                int skip_special_tokens, char **text /* OUT */,
                                size_t *len /* OUT, may be NULL */, tsr_error *err);
void tsr_tokenizer_text_free(char *text);

/* Ids span [0, vocab_size); holes (ids naming no token) are possible. */
int32_t tsr_tokenizer_vocab_size(const tsr_tokenizer *tok);
/* Id of a token string (added tokens first, then the model vocabulary), or -1. */
int32_t tsr_tokenizer_token_to_id(const tsr_tokenizer *tok, const char *token, size_t len);
/* Token string as written in tokenizer.json (NUL-terminated, valid while tok lives), or NULL. */
const char *tsr_tokenizer_id_to_token(const tsr_tokenizer *tok, int32_t id);
/* 1 when id is an added token marked special, else 0. */
int tsr_tokenizer_is_special(const tsr_tokenizer *tok, int32_t id);
/* Ids of the configured bos/eos/pad/unk tokens (tokenizer_config.json, then
 * special_tokens_map.json), or -1 when not configured. */
int32_t tsr_tokenizer_bos_id(const tsr_tokenizer *tok);
int32_t tsr_tokenizer_eos_id(const tsr_tokenizer *tok);
int32_t tsr_tokenizer_pad_id(const tsr_tokenizer *tok);
int32_t tsr_tokenizer_unk_id(const tsr_tokenizer *tok);

/* Streaming detokenizer: fed one id at a time, it returns only text that is complete UTF-8
 * and will not change with later ids (the algorithm of `tokenizers`' DecodeStream). One
 * stream per generation, used by one thread at a time; it borrows tok. */
typedef struct tsr_detok_stream tsr_detok_stream;

tsr_status tsr_detok_stream_new(const tsr_tokenizer *tok, int skip_special_tokens,
                                tsr_detok_stream **out /* OUT */, tsr_error *err);
/* Appends id; *text and *len receive the newly complete text (possibly empty), owned by the
 * stream and valid until the next call on it. */
tsr_status tsr_detok_stream_step(tsr_detok_stream *s, int32_t id, const char **text /* OUT */,
                                 size_t *len /* OUT */, tsr_error *err);
/* Returns whatever is still held back (decoded with U+FFFD for incomplete bytes) and resets. */
tsr_status tsr_detok_stream_flush(tsr_detok_stream *s, const char **text /* OUT */,
                                  size_t *len /* OUT */, tsr_error *err);
void tsr_detok_stream_free(tsr_detok_stream *s);

/* ------------------------------------------------------------------------------------ */
/* Chat templates                                                                         */
/* ------------------------------------------------------------------------------------ */

/* A conversation turns into the prompt string a checkpoint's chat template produces, equal
 * to transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt=...).
 * Templates are recognised by content (a fingerprint of the template text) and rendered by a
 * built-in Jinja interpreter. Known families and revisions:
 *   qwen2_vl   Qwen2-VL / Qwen2.5-VL Instruct (the base checkpoints' template is refused:
 *              it formats one content list, not a conversation)
 *   llava_next llava-v1.6-mistral (both hub revisions), llava-v1.6-vicuna
 *   mllama     Llama-3.2-Vision-Instruct (the 2024 template and the later one)
 *   mistral3   Mistral-Small-3.1-24B-Instruct-2503
 *   minicpmo   MiniCPM-o 2.6 audio conversations (model.chat()'s TTS template, read from the
 *              checkpoint's modeling_minicpmo.py; content parts are flattened as chat() does)
 * An unknown template is TSR_ERR_UNSUPPORTED unless params->allow_unknown is set. Audio in a
 * family that takes none is TSR_ERR_UNSUPPORTED. Errors a template raises for a conversation
 * (raise_exception, a type error) are TSR_ERR_INVALID_ARG with the template's message. */

typedef enum tsr_chat_part_type {
    TSR_CHAT_PART_TEXT = 0,
    TSR_CHAT_PART_IMAGE,
    TSR_CHAT_PART_AUDIO
} tsr_chat_part_type;

/* One content part. Strings are borrowed. */
typedef struct tsr_chat_part {
    tsr_chat_part_type type;
    const char *text;   /* TEXT: the text (required); IMAGE: URL or data: URI; AUDIO: base64
                           data. The template sees only {"type": "image"|"audio"}. */
    const char *format; /* AUDIO: "wav", "mp3", ... as given; NULL otherwise */
} tsr_chat_part;

/* One message. content (a plain string) is used when parts is NULL; the template sees
 * content as a string or as a list of parts accordingly, which matters to most templates.
 * Both NULL: the message has no content key. */
typedef struct tsr_chat_message {
    const char *role; /* "system", "user", "assistant", ... */
    const char *content;
    const tsr_chat_part *parts;
    size_t n_parts;
} tsr_chat_message;

typedef struct tsr_chat_template tsr_chat_template; /* immutable once loaded; shareable */

typedef struct tsr_chat_template_params {
    size_t size;              /* sizeof(tsr_chat_template_params) */
    int32_t allow_unknown;    /* non-zero: render templates whose fingerprint is unknown */
    /* Special tokens passed to the template as bos_token, eos_token, unk_token, pad_token.
     * Non-NULL values override those read from tokenizer_config.json / special_tokens_map.json. */
    const char *bos_token;
    const char *eos_token;
    const char *unk_token;
    const char *pad_token;
    /* MiniCPM-o: text of model.chat()'s TTS template, for tsr_chat_template_from_string
     * (tsr_chat_template_load reads it from modeling_minicpmo.py). May be NULL. */
    const char *audio_template;
} tsr_chat_template_params;

tsr_chat_template_params tsr_chat_template_params_default(void);

/* Loads the template of a model directory as transformers finds it: chat_template.jinja,
 * then chat_template.json ("chat_template"), then tokenizer_config.json ("chat_template", a
 * string or the "default" entry of a list); special tokens from tokenizer_config.json, then
 * special_tokens_map.json. params may be NULL. */
tsr_status tsr_chat_template_load(const char *model_dir, const tsr_chat_template_params *params,
                                  tsr_chat_template **out /* OUT */, tsr_error *err);
/* The same from template text (len bytes; UTF-8). */
tsr_status tsr_chat_template_from_string(const char *text, size_t len,
                                         const tsr_chat_template_params *params,
                                         tsr_chat_template **out /* OUT */, tsr_error *err);
void tsr_chat_template_free(tsr_chat_template *t);

/* "qwen2_vl", "llava_next", "mllama", "minicpmo", "mistral3" or "unknown"; never NULL. */
const char *tsr_chat_template_family(const tsr_chat_template *t);
/* Revision name, e.g. "llava-v1.6-mistral"; "unknown" when not recognised; never NULL. */
const char *tsr_chat_template_revision(const tsr_chat_template *t);
/* FNV-1a 64 of the main template text. */
uint64_t tsr_chat_template_fingerprint(const tsr_chat_template *t);

typedef struct tsr_chat_render_params {
    size_t size;                   /* sizeof(tsr_chat_render_params) */
    int32_t add_generation_prompt; /* default 1 */
    int64_t now_unix;              /* time strftime_now() shows (local time zone); 0: now */
    size_t max_output_bytes;       /* default 16 MiB (LIMIT beyond) */
} tsr_chat_render_params;

tsr_chat_render_params tsr_chat_render_params_default(void);

/* Renders messages[0..n) to a NUL-terminated prompt (*out, freed with tsr_chat_string_free;
 * *out_len may be NULL). params may be NULL. Thread-safe on a shared template. */
tsr_status tsr_chat_template_render(const tsr_chat_template *t, const tsr_chat_message *messages,
                                    size_t n, const tsr_chat_render_params *params,
                                    char **out /* OUT */, size_t *out_len /* OUT */,
                                    tsr_error *err);
void tsr_chat_string_free(char *s);

/* Messages parsed from OpenAI-style JSON: an array of messages or an object with
 * "messages". content is a string, null, or an array of parts: {"type": "text", "text"},
 * {"type": "image_url", "image_url": {"url"} or "url"}, {"type": "input_audio",
 * "input_audio": {"data", "format"}}, and the HF forms {"type": "image"|"audio"}. Other
 * message keys are ignored. Errors name the path ("messages[1].content[2].type"). */
typedef struct tsr_chat_messages tsr_chat_messages;

tsr_status tsr_chat_messages_parse_json(const char *json, size_t len,
                                        tsr_chat_messages **out /* OUT */, tsr_error *err);
size_t tsr_chat_messages_count(const tsr_chat_messages *m);
/* The messages (count of them), valid until tsr_chat_messages_free. */
const tsr_chat_message *tsr_chat_messages_items(const tsr_chat_messages *m);
void tsr_chat_messages_free(tsr_chat_messages *m);

/* ------------------------------------------------------------------------------------ */
/* Processors: the media pipeline on its own                                             */
/* ------------------------------------------------------------------------------------ */

/* A model family's input processor, equal to transformers' AutoProcessor (PIL backend):
 * chat template, media preprocessing, placeholder expansion and tokenization, giving the
 * tensors a model consumes under the names transformers uses ("input_ids",
 * "attention_mask", "pixel_values", "image_grid_thw", "image_sizes", "aspect_ratio_ids",
 * "cross_attention_mask", "audio_features", ...). Loading needs only the configuration and
 * tokenizer files of a model directory (config.json for model_type, preprocessor_config.json,
 * processor_config.json, tokenizer.json, tokenizer_config.json, the chat template), no
 * weights. This is the entry point for people who run their own engine.
 * A loaded processor is immutable: tsr_processor_run* may be called from several threads. */
typedef struct tsr_processor tsr_processor;

typedef struct tsr_processor_params {
    size_t size;          /* sizeof(tsr_processor_params) */
    tsr_limits limits;    /* applied when decoding encoded media */
    int32_t allow_unknown_template; /* render a chat template Tessera does not recognise */
    int64_t now_unix;     /* the time templates that print today's date see; 0: now */
} tsr_processor_params;

tsr_processor_params tsr_processor_params_default(void);

tsr_status tsr_processor_load(const char *model_dir, const tsr_processor_params *params,
                              tsr_processor **out /* OUT */, tsr_error *err);
void tsr_processor_free(tsr_processor *p);
/* config.json model_type ("qwen2_vl", "llava_next", "mllama", "minicpmo", "mistral3", ...). */
const char *tsr_processor_model_type(const tsr_processor *p);
const tsr_tokenizer *tsr_processor_tokenizer(const tsr_processor *p);

/* One media item, in the order it appears in the prompt. Give either encoded bytes or a
 * decoded image / audio. Encoded images get their EXIF orientation applied; then, as the HF
 * processors do: in chat runs an alpha channel (RGBA, LA files) is dropped (load_image's
 * convert("RGB")), while a transparency chunk and, in prompt runs, any alpha are composited
 * over white (convert_rgb); MiniCPM-o always drops alpha. Audio is mixed to mono and
 * resampled to 16 kHz as librosa.load does; decoded audio must already be 16 kHz mono. */
typedef struct tsr_media {
    tsr_media_kind kind;       /* TSR_MEDIA_IMAGE or TSR_MEDIA_AUDIO */
    const uint8_t *data;       /* encoded bytes, or NULL */
    size_t len;
    const tsr_image *image;    /* decoded RGB8 / RGBA8 (used when data is NULL) */
    const tsr_audio *audio;    /* decoded mono float32 (used when data is NULL) */
} tsr_media;

/* Renders messages with the model's chat template (add_generation_prompt), expands each image
 * / audio placeholder for the media given (in order), tokenizes as
 * apply_chat_template(tokenize=True) does (special tokens are added only when the rendered
 * prompt does not already start with the BOS token) and returns every output tensor in *out
 * (freed with tsr_tensor_list_free). More or fewer media items than the prompt has
 * placeholders is INVALID_ARG; media the model cannot take is UNSUPPORTED. */
tsr_status tsr_processor_run_chat(const tsr_processor *p, const tsr_chat_message *messages,
                                  size_t n_messages, const tsr_media *media, size_t n_media,
                                  tsr_tensor_list **out /* OUT */, tsr_error *err);

/* The same for a prompt that already holds the family's placeholders (no template):
 * processor(text=prompt, images=..., add_special_tokens=...). add_special_tokens != 0 applies
 * the tokenizer's post-processor (e.g. BOS), as the processors do by default. */
tsr_status tsr_processor_run_prompt(const tsr_processor *p, const char *prompt,
                                    int add_special_tokens, const tsr_media *media,
                                    size_t n_media, tsr_tensor_list **out /* OUT */,
                                    tsr_error *err);

/* ------------------------------------------------------------------------------------ */
/* Models and generation                                                                 */
/* ------------------------------------------------------------------------------------ */

/* A model is loaded from a hub directory: config.json (text_config when nested),
 * generation_config.json (eos ids), model.safetensors or the shards named by
 * model.safetensors.index.json. Text decoders of model_type "qwen2", "llama", "mistral",
 * "qwen2_vl" (its language model; the visual.* tensors are left to the vision encoder) and
 * "mllama" (language_model.*; vision_model.* and multi_modal_projector.* are left to the
 * vision encoder) are supported: GQA, RMSNorm, SwiGLU, q/k/v bias (qwen2), tied or untied
 * embeddings, RoPE "default" and "llama3" scaling, Qwen2-VL's M-RoPE (mrope_section),
 * Mistral's sliding window, MLlama's gated cross-attention layers (cross_attention_layers;
 * ids may use the 8 embedding rows past vocab_size, e.g. <|image|>). Weights are mmapped and
 * weight matrices (embeddings, projections, MLP, lm_head) are used in place in their stored
 * type, F32, F16 or BF16: the kernels widen 16-bit values to F32 as they read them (compute is
 * F32), so a model's resident memory is about its file size. The F16 / BF16 vectors (norms,
 * biases, gates) are converted to F32 once at load. A session adds its F32 KV cache
 * (2 * layers * n_ctx * kv_heads * head_dim floats) and run state.
 * Loading validates everything before the first forward: unknown model_type, config values
 * (heads dividing hidden_size, kv heads dividing heads, rope settings), every expected
 * tensor present with its shape (both shapes named), no unexpected tensors, shards complete.
 * A loaded model is immutable and may be shared by sessions on several threads. */
typedef struct tsr_model tsr_model;

/* Load progress: fraction in [0, 1] and what is being done ("model-00001-of-00002..."),
 * called on the loading thread. A non-zero return cancels the load (TSR_ERR_CANCELLED). */
typedef int (*tsr_progress_fn)(float fraction, const char *what, void *user);

typedef struct tsr_model_params {
    size_t size;               /* sizeof(tsr_model_params) */
    tsr_progress_fn progress;  /* may be NULL */
    void *progress_user;
    uint64_t max_config_bytes; /* config.json / index size bound; default 16 MiB */
} tsr_model_params;

tsr_model_params tsr_model_params_default(void);

tsr_status tsr_model_load(const char *model_dir, const tsr_model_params *params,
                          tsr_model **out /* OUT */, tsr_error *err);
void tsr_model_free(tsr_model *model);

/* Facts of a loaded model. The strings live as long as the model. */
const char *tsr_model_type(const tsr_model *model);  /* config model_type, e.g. "qwen2" */
int32_t tsr_model_vocab_size(const tsr_model *model); /* rows of the logits */
int32_t tsr_model_hidden_size(const tsr_model *model);
int64_t tsr_model_max_positions(const tsr_model *model); /* max_position_embeddings */
/* EOS ids from config.json and generation_config.json (union, in that order); *ids is valid
 * as long as the model. Returns the count. */
size_t tsr_model_eos_ids(const tsr_model *model, const int32_t **ids /* OUT */);

/* A session holds the mutable state of one conversation: KV cache for n_ctx positions,
 * preallocated scratch, the worker threads. One thread at a time per session. */
typedef struct tsr_session tsr_session;

typedef struct tsr_session_params {
    size_t size;       /* sizeof(tsr_session_params) */
    int64_t n_ctx;     /* positions the KV cache holds; 0: min(max_position_embeddings, 4096) */
    int64_t n_batch;   /* prefill chunk (tokens per forward); default 256 */
    int32_t n_threads; /* worker threads incl. the caller; 0: online CPUs (at most 16).
                        * The workers split every matrix product and call OpenBLAS, which the
                        * first session sets to one thread (openblas_set_num_threads, for the
                        * whole process). */
} tsr_session_params;

tsr_session_params tsr_session_params_default(void);

/* The model must outlive the session. n_ctx above max_position_embeddings is LIMIT. */
tsr_status tsr_session_new(const tsr_model *model, const tsr_session_params *params,
                           tsr_session **out /* OUT */, tsr_error *err);
void tsr_session_free(tsr_session *s);
/* Forgets the KV cache (a new conversation); keeps the buffers. */
void tsr_session_reset(tsr_session *s);
int64_t tsr_session_n_past(const tsr_session *s); /* positions filled in the KV cache */
int64_t tsr_session_n_ctx(const tsr_session *s);

/* Precomputed embeddings that replace the embeddings of ids[start, start + n_tokens) (the
 * media placeholders): data is F32 [n_tokens, hidden_size], borrowed for the call. */
typedef struct tsr_embed_span {
    int64_t start;
    int64_t n_tokens;
    const float *data;
} tsr_embed_span;

/* Tokens appended to the session by one tsr_session_decode call. */
typedef struct tsr_decode_input {
    size_t size;                 /* sizeof(tsr_decode_input) */
    const int32_t *ids;          /* [n_ids] token ids in [0, vocab_size) (+ 8 for mllama) */
    int64_t n_ids;
    const tsr_embed_span *spans; /* media embeddings (sorted, non-overlapping); may be NULL */
    size_t n_spans;
    /* Explicit RoPE positions: [n_pos_rows, n_ids] values in [0, 2^31), 1 row or 3 (Qwen2-VL
     * M-RoPE rows t, h, w, as transformers' get_rope_index returns them). The KV cache and
     * causal mask still follow the order of the tokens. NULL: positions continue after the
     * last one used (n_past for text; after an explicit input, 1 + its largest position). */
    const int64_t *position_ids;
    int32_t n_pos_rows;
    /* MLlama cross-attention states: F32, contiguous, last dim hidden_size, the rows in order
     * (transformers' [n_images * n_tiles, n_patches, hidden] or flat [n_media, hidden]).
     * Their keys and values are computed once, by this call, and kept by the session until
     * tsr_session_reset (a second set in the same session is UNSUPPORTED). Without cross
     * states (in this call or an earlier one) the cross-attention layers are skipped, as
     * transformers does for text-only input. Models without such layers: UNSUPPORTED. */
    const tsr_tensor *cross_states;
    int32_t logits_all;          /* non-zero: logits of every position, else the last one */
    /* MLlama cross_attention_mask of these ids: I64, I32 or U8, contiguous, [n_ids, ...] or
     * [1, n_ids, ...] (the processor's [1, seq_len, max_images, max_tiles]); the values of a
     * row after the first dims are its blocks (tiles), each n_media / n_blocks rows of the
     * cross states; 1 attends, anything else does not. A token attending to no block
     * attends to all and its cross-attention MLP output is dropped (transformers'
     * full_text_row_masked_out_mask). NULL: tokens take the last row given (as generate()
     * extends the mask), or attend to all when none was. Needs cross states. */
    const tsr_tensor *cross_mask;
} tsr_decode_input;

tsr_decode_input tsr_decode_input_default(void);

/* Runs the decoder over the input (in chunks of n_batch), appending to the KV cache.
 * logits (may be NULL) receives F32 [n_ids, vocab] when in->logits_all, else [vocab];
 * logits_len is its capacity in floats (too small is INVALID_ARG, checked first).
 * Going past n_ctx is LIMIT and leaves the session as it was. */
tsr_status tsr_session_decode(tsr_session *s, const tsr_decode_input *in,
                              float *logits /* OUT */, size_t logits_len, tsr_error *err);
/* Logits of the last position decoded ([vocab]), owned by the session, valid until the next
 * decode or reset; NULL before any decode. */
const float *tsr_session_logits(const tsr_session *s);

/* Sampling as transformers' generate() does it: repetition penalty over prompt and generated
 * ids, then temperature, top-k, top-p, min-p (in that order, filtered logits set to -inf),
 * then a draw from softmax with a seeded generator. frequency / presence penalties follow
 * the OpenAI definition (logit -= frequency * count + presence * (count > 0), generated ids
 * only) and run first. temperature <= 0 (or top_k == 1) is greedy: the first argmax. */
typedef struct tsr_sampling_params {
    size_t size;              /* sizeof(tsr_sampling_params) */
    float temperature;        /* default 1 */
    int32_t top_k;            /* 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 1: off; > 0 */
    float frequency_penalty;  /* 0: off */
    float presence_penalty;   /* 0: off */
    uint64_t seed;            /* default 0 */
} tsr_sampling_params;

tsr_sampling_params tsr_sampling_params_default(void);
/* The checkpoint's defaults, as generate() applies them: generation_config.json's
 * temperature, top_k, top_p, min_p and repetition_penalty over transformers' defaults
 * (top_k 50), greedy (temperature 0) unless it sets do_sample. Callers override fields the
 * user sets. */
tsr_sampling_params tsr_model_sampling_defaults(const tsr_model *model);

/* Sampler state: the RNG, per-id counts and scratch for n_vocab logits (preallocated). */
typedef struct tsr_sampler tsr_sampler;

tsr_status tsr_sampler_new(const tsr_sampling_params *params, int32_t n_vocab,
                           tsr_sampler **out /* OUT */, tsr_error *err);
void tsr_sampler_free(tsr_sampler *s);
/* Clears history and reseeds. */
void tsr_sampler_reset(tsr_sampler *s);
/* Records an id of the context: prompt ids (generated = 0) count for the repetition penalty,
 * generated ids (generated = 1) also for frequency / presence. */
tsr_status tsr_sampler_accept(tsr_sampler *s, int32_t id, int generated, tsr_error *err);
/* Applies penalties and warpers to logits[n_vocab] in place (what is sampled from). */
tsr_status tsr_sampler_process(tsr_sampler *s, float *logits, tsr_error *err);
/* Processes logits (in place) and draws an id. Non-finite logits are INVALID_ARG. */
tsr_status tsr_sampler_sample(tsr_sampler *s, float *logits, int32_t *id /* OUT */,
                              tsr_error *err);

typedef enum tsr_stop_reason {
    TSR_STOP_NONE = 0,
    TSR_STOP_EOS,       /* an EOS id of the model (not included in the text) */
    TSR_STOP_STRING,    /* a stop string (the text ends before it) */
    TSR_STOP_LENGTH,    /* max_tokens or the end of the context */
    TSR_STOP_CANCELLED  /* the token callback returned non-zero */
} tsr_stop_reason;

/* Called for each generated id with the newly complete text (possibly empty; held back
 * while it may be the start of a stop string), and once more with id -1 at the end when text
 * was still held back. text is valid during the call only. Non-zero return stops generation
 * (TSR_STOP_CANCELLED; the call still returns TSR_OK). */
typedef int (*tsr_token_fn)(int32_t id, const char *text, size_t len, void *user);

typedef struct tsr_generate_params {
    size_t size;                  /* sizeof(tsr_generate_params) */
    tsr_sampling_params sampling;
    int64_t max_tokens;           /* default 256 */
    const tsr_tokenizer *tokenizer; /* for text and stop strings; may be NULL (no text) */
    const char *const *stop;      /* stop strings (need tokenizer); may be NULL */
    size_t n_stop;
    int32_t ignore_eos;           /* non-zero: do not stop on EOS ids */
    tsr_token_fn on_token;        /* may be NULL */
    void *user;
} tsr_generate_params;

tsr_generate_params tsr_generate_params_default(void);

typedef struct tsr_usage {
    int64_t prompt_tokens;
    int64_t completion_tokens;
    double prefill_ms;
    double decode_ms;
    tsr_stop_reason stop_reason;
    /* Filled by tsr_chat_generate (0 elsewhere): */
    double image_ms;        /* vision encoder time of the media encoded for this call */
    double audio_ms;        /* audio encoder time */
    int64_t cached_tokens;  /* prompt tokens reused from the KV cache of earlier turns */
} tsr_usage;

/* Decodes the prompt (appended to the session) then generates up to max_tokens ids.
 * out (may be NULL) receives the generated ids (the EOS id excluded); usage may be NULL.
 * Running out of context stops with TSR_STOP_LENGTH. No allocation per generated token. */
tsr_status tsr_session_generate(tsr_session *s, const tsr_decode_input *prompt,
                                const tsr_generate_params *params,
                                tsr_token_ids *out /* OUT */, tsr_usage *usage /* OUT */,
                                tsr_error *err);

/* ------------------------------------------------------------------------------------ */
/* Multimodal prompts                                                                    */
/* ------------------------------------------------------------------------------------ */

/* tsr_model_load on a multimodal checkpoint (model_type qwen2_vl, qwen2_5_vl, llava_next,
 * mllama, minicpmo, mistral3) also loads its vision (and, for MiniCPM-o, audio) encoders with
 * their connectors, and the model's processor (as tsr_processor_load on the same directory).
 * A text-only checkpoint with a tokenizer gets a processor that renders the chat template
 * and tokenizes, and takes no media. NULL when the directory has no tokenizer. */
const tsr_processor *tsr_model_processor(const tsr_model *model);
/* Media kinds the model takes: bits (1u << TSR_MEDIA_IMAGE) | (1u << TSR_MEDIA_AUDIO). */
uint32_t tsr_model_media_kinds(const tsr_model *model);

/* A processor output run through the model's encoders: the decoder input of one prompt
 * (token ids, media embedding spans, M-RoPE positions, MLlama cross-attention states). */
typedef struct tsr_prompt tsr_prompt;

/* inputs: the output of tsr_processor_run_chat / tsr_processor_run_prompt with the model's
 * processor. The encoders run on the session's threads (s may be NULL: one thread). Shapes
 * are checked at each hand-off (SHAPE naming both). inputs may be freed afterwards. */
tsr_status tsr_prompt_new(const tsr_model *model, tsr_session *s, const tsr_tensor_list *inputs,
                          tsr_prompt **out /* OUT */, tsr_error *err);
void tsr_prompt_free(tsr_prompt *p);
/* The whole prompt as a decoder input, valid as long as p (ids are I32 copies). */
const tsr_decode_input *tsr_prompt_input(const tsr_prompt *p);
/* The prompt's tokens from index `from` on (to extend a KV cache that holds the first `from`
 * ids): spans and positions are cut to match. A media span that starts before `from` and
 * ends after it is INVALID_ARG. *out is valid until the next call on p. */
tsr_status tsr_prompt_input_from(tsr_prompt *p, int64_t from, tsr_decode_input *out /* OUT */,
                                 tsr_error *err);
/* Encoder outputs: "embeds" F32 [rows, hidden], "embed_spans" I64 [n, 2] (start, n_tokens),
 * "position_ids" I64 [3, n_ids], "cross_attention_states" F32 (those that apply). */
const tsr_tensor_list *tsr_prompt_tensors(const tsr_prompt *p);
double tsr_prompt_image_ms(const tsr_prompt *p); /* encoder time per modality */
double tsr_prompt_audio_ms(const tsr_prompt *p);

/* ------------------------------------------------------------------------------------ */
/* Conversations                                                                         */
/* ------------------------------------------------------------------------------------ */

/* A multi-turn conversation on one session: messages with text, image and audio parts are
 * appended; each tsr_chat_generate renders the whole conversation with the model's chat
 * template, encodes its media, reuses the KV cache for the prompt tokens that match the
 * previous turn and appends the reply as an assistant message. One thread at a time. */
typedef struct tsr_chat tsr_chat;

tsr_status tsr_chat_new(const tsr_model *model, const tsr_session_params *params,
                        tsr_chat **out /* OUT */, tsr_error *err);
void tsr_chat_free(tsr_chat *c);
/* Forgets the conversation and the KV cache. */
void tsr_chat_reset(tsr_chat *c);
/* Appends a message (copied). Its IMAGE / AUDIO parts (whose text may be NULL) take media[0],
 * media[1], ... in order: n_media must equal their count. Media the model cannot take is
 * INVALID_ARG; undecodable media fails here with the decoder's error. */
tsr_status tsr_chat_add(tsr_chat *c, const tsr_chat_message *message, const tsr_media *media,
                        size_t n_media, tsr_error *err);
/* Generates the assistant's reply to the conversation (on_token streams it). *text (may be
 * NULL) receives the reply (free with tsr_chat_string_free); ids and usage may be NULL.
 * On failure the conversation is as it was before the call. */
tsr_status tsr_chat_generate(tsr_chat *c, const tsr_generate_params *params,
                             char **text /* OUT */, tsr_token_ids *ids /* OUT */,
                             tsr_usage *usage /* OUT */, tsr_error *err);
size_t tsr_chat_n_messages(const tsr_chat *c);
const tsr_session *tsr_chat_session(const tsr_chat *c);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_H */
