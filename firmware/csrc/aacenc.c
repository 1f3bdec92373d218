/*
 * In-process AAC encoding with ffmpeg's own encoder (libavcodec's "aac"), for scored.mp4.
 *
 * Compiled against the libavcodec/libavutil headers found at build time, but not linked to
 * them: the libraries are opened with dlopen (by the sonames of those headers' major
 * versions) the first time they are needed, on a thread that is not on the critical path.
 * Linked, they would add their dynamic linking (~15 ms here, 96 libraries) to the start of
 * every undertone process, the live engine's included; opened, they cost that once per
 * score, in place of two ffmpeg processes (~50 ms of CPU each to start).
 *
 * The encoder is set up as `ffmpeg -c:a aac -aac_coder fast -b:a 192k -flags:a +bitexact`
 * sets it up for 48 kHz stereo, so the packets are the same bytes (score::aac tests).
 * See firmware/src/score/aac.rs for the Rust side.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/channel_layout.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>

#define UT_STR2(x) #x
#define UT_STR(x) UT_STR2(x)
#define UT_LAVC_SONAME "libavcodec.so." UT_STR(LIBAVCODEC_VERSION_MAJOR)
#define UT_LAVU_SONAME "libavutil.so." UT_STR(LIBAVUTIL_VERSION_MAJOR)

/* AVChannelLayout replaced the channel mask and count in libavutil 57.24 (FFmpeg 5.1). */
#if LIBAVUTIL_VERSION_INT >= AV_VERSION_INT(57, 24, 100)
#define UT_CH_LAYOUT 1
#else
#define UT_CH_LAYOUT 0
#endif

static struct {
    const AVCodec *(*find_encoder_by_name)(const char *);
    AVCodecContext *(*alloc_context3)(const AVCodec *);
    int (*open2)(AVCodecContext *, const AVCodec *, AVDictionary **);
    int (*send_frame)(AVCodecContext *, const AVFrame *);
    int (*receive_packet)(AVCodecContext *, AVPacket *);
    void (*free_context)(AVCodecContext **);
    AVPacket *(*packet_alloc)(void);
    void (*packet_free)(AVPacket **);
    void (*packet_unref)(AVPacket *);
    AVFrame *(*frame_alloc)(void);
    void (*frame_free)(AVFrame **);
    int (*frame_get_buffer)(AVFrame *, int);
    int (*frame_make_writable)(AVFrame *);
    int (*opt_set)(void *, const char *, const char *, int);
    int (*strerror)(int, char *, size_t);
    void (*log_set_level)(int);
    unsigned (*avcodec_version)(void);
    unsigned (*avutil_version)(void);
#if UT_CH_LAYOUT
    void (*channel_layout_default)(AVChannelLayout *, int);
#endif
} api;

struct ut_aac {
    AVCodecContext *ctx;
    AVFrame *frame;
    AVPacket *packet;
    int channels;
    int64_t pts;
};

typedef void (*ut_packet_cb)(void *user, const uint8_t *data, int size);

/* Opens both libraries and finds every function; 0, or -1 with the reason in err. */
int ut_aac_load(char *err, size_t err_len)
{
    void *lavc = dlopen(UT_LAVC_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lavc) {
        snprintf(err, err_len, "%s", dlerror());
        return -1;
    }
    void *lavu = dlopen(UT_LAVU_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lavu) {
        snprintf(err, err_len, "%s", dlerror());
        return -1;
    }
#define UT_SYM(lib, field, name)                                                     \
    do {                                                                              \
        *(void **)(&api.field) = dlsym(lib, name);                                    \
        if (!api.field) {                                                             \
            snprintf(err, err_len, "%s has no %s", lib == lavc ? UT_LAVC_SONAME : UT_LAVU_SONAME, \
                     name);                                                           \
            return -1;                                                                \
        }                                                                             \
    } while (0)
    UT_SYM(lavc, find_encoder_by_name, "avcodec_find_encoder_by_name");
    UT_SYM(lavc, alloc_context3, "avcodec_alloc_context3");
    UT_SYM(lavc, open2, "avcodec_open2");
    UT_SYM(lavc, send_frame, "avcodec_send_frame");
    UT_SYM(lavc, receive_packet, "avcodec_receive_packet");
    UT_SYM(lavc, free_context, "avcodec_free_context");
    UT_SYM(lavc, packet_alloc, "av_packet_alloc");
    UT_SYM(lavc, packet_free, "av_packet_free");
    UT_SYM(lavc, packet_unref, "av_packet_unref");
    UT_SYM(lavu, frame_alloc, "av_frame_alloc");
    UT_SYM(lavu, frame_free, "av_frame_free");
    UT_SYM(lavu, frame_get_buffer, "av_frame_get_buffer");
    UT_SYM(lavu, frame_make_writable, "av_frame_make_writable");
    UT_SYM(lavu, opt_set, "av_opt_set");
    UT_SYM(lavu, strerror, "av_strerror");
    UT_SYM(lavu, log_set_level, "av_log_set_level");
    UT_SYM(lavc, avcodec_version, "avcodec_version");
    UT_SYM(lavu, avutil_version, "avutil_version");
#if UT_CH_LAYOUT
    UT_SYM(lavu, channel_layout_default, "av_channel_layout_default");
#endif
#undef UT_SYM
    /*
     * Within a major version fields are only ever added at the end of a struct, so a library
     * at least as new as the headers has every field this file sets (an older 59, FFmpeg 5.0,
     * has no AVCodecContext.ch_layout: setting it would write past the struct).
     */
    unsigned lavc_v = api.avcodec_version(), lavu_v = api.avutil_version();
    if (lavc_v < LIBAVCODEC_VERSION_INT || lavu_v < LIBAVUTIL_VERSION_INT) {
        snprintf(err, err_len,
                 "libavcodec %u.%u and libavutil %u.%u are older than the %d.%d and %d.%d "
                 "this build was made against",
                 lavc_v >> 16, (lavc_v >> 8) & 0xFF, lavu_v >> 16, (lavu_v >> 8) & 0xFF,
                 LIBAVCODEC_VERSION_MAJOR, LIBAVCODEC_VERSION_MINOR, LIBAVUTIL_VERSION_MAJOR,
                 LIBAVUTIL_VERSION_MINOR);
        return -1;
    }
    /* Errors come back as return codes; nothing is printed on undertone's stderr. */
    api.log_set_level(AV_LOG_QUIET);
    return 0;
}

/* The libraries' sonames, for messages. */
const char *ut_aac_libraries(void) { return UT_LAVC_SONAME " and " UT_LAVU_SONAME; }

/* The text of a libav error code. */
void ut_aac_strerror(int code, char *buf, size_t len)
{
    if (api.strerror(code, buf, len) < 0)
        snprintf(buf, len, "error %d", code);
}

void ut_aac_close(struct ut_aac *e)
{
    if (!e)
        return;
    api.frame_free(&e->frame);
    api.packet_free(&e->packet);
    api.free_context(&e->ctx);
    free(e);
}

/* A new encoder (after ut_aac_load succeeded): 0, or a negative libav error code. */
int ut_aac_open(struct ut_aac **out, int sample_rate, int channels, int64_t bit_rate,
                const char *coder, int frame_len, int *initial_padding)
{
    *out = NULL;
    const AVCodec *codec = api.find_encoder_by_name("aac");
    if (!codec)
        return AVERROR_ENCODER_NOT_FOUND;
    struct ut_aac *e = calloc(1, sizeof *e);
    if (!e)
        return AVERROR(ENOMEM);
    e->channels = channels;
    int r = AVERROR(ENOMEM);
    if (!(e->ctx = api.alloc_context3(codec)) || !(e->frame = api.frame_alloc())
        || !(e->packet = api.packet_alloc()))
        goto fail;
    AVCodecContext *c = e->ctx;
    c->sample_fmt = AV_SAMPLE_FMT_FLTP;
    c->sample_rate = sample_rate;
    c->bit_rate = bit_rate;
    c->time_base = (AVRational){1, sample_rate};
    c->flags |= AV_CODEC_FLAG_BITEXACT;
#if UT_CH_LAYOUT
    api.channel_layout_default(&c->ch_layout, channels);
#else
    c->channels = channels;
    c->channel_layout = channels == 1 ? AV_CH_LAYOUT_MONO : AV_CH_LAYOUT_STEREO;
#endif
    if ((r = api.opt_set(c, "aac_coder", coder, AV_OPT_SEARCH_CHILDREN)) < 0)
        goto fail;
    if ((r = api.open2(c, codec, NULL)) < 0)
        goto fail;
    if (c->frame_size != frame_len) {
        r = AVERROR(EINVAL);
        goto fail;
    }
    AVFrame *f = e->frame;
    f->format = AV_SAMPLE_FMT_FLTP;
    f->sample_rate = sample_rate;
    f->nb_samples = frame_len;
#if UT_CH_LAYOUT
    api.channel_layout_default(&f->ch_layout, channels);
#else
    f->channels = channels;
    f->channel_layout = c->channel_layout;
#endif
    if ((r = api.frame_get_buffer(f, 0)) < 0)
        goto fail;
    *initial_padding = c->initial_padding;
    *out = e;
    return 0;
fail:
    ut_aac_close(e);
    return r;
}

/* Copies the encoder's AudioSpecificConfig into buf; its length (which may exceed len). */
int ut_aac_config(const struct ut_aac *e, uint8_t *buf, int len)
{
    int n = e->ctx->extradata_size;
    if (e->ctx->extradata && n > 0)
        memcpy(buf, e->ctx->extradata, n < len ? n : len);
    return n;
}

/* Hands each packet the encoder has ready to cb; 0 once it wants input (or has ended). */
static int drain(struct ut_aac *e, ut_packet_cb cb, void *user)
{
    for (;;) {
        int r = api.receive_packet(e->ctx, e->packet);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
            return 0;
        if (r < 0)
            return r;
        cb(user, e->packet->data, e->packet->size);
        api.packet_unref(e->packet);
    }
}

/*
 * Encodes `frames` (1..=frame_len) samples per channel of interleaved 16-bit PCM, converted
 * to float as ffmpeg's resampler converts s16 (x / 32768), or, with frames == 0, flushes the
 * encoder. Each finished packet goes to cb. 0, or a negative libav error code.
 */
int ut_aac_encode(struct ut_aac *e, const int16_t *pcm, int frames, ut_packet_cb cb, void *user)
{
    int r;
    if (frames == 0) {
        if ((r = api.send_frame(e->ctx, NULL)) < 0)
            return r;
        return drain(e, cb, user);
    }
    AVFrame *f = e->frame;
    if (frames > e->ctx->frame_size)
        return AVERROR(EINVAL);
    /* A buffer the encoder still holds is replaced by one of this size. */
    f->nb_samples = e->ctx->frame_size;
    if ((r = api.frame_make_writable(f)) < 0)
        return r;
    const float scale = 1.0f / 32768.0f;
    for (int ch = 0; ch < e->channels; ch++) {
        float *dst = (float *)f->extended_data[ch];
        for (int i = 0; i < frames; i++)
            dst[i] = (float)pcm[i * e->channels + ch] * scale;
    }
    f->nb_samples = frames;
    f->pts = e->pts;
    e->pts += frames;
    if ((r = api.send_frame(e->ctx, f)) < 0)
        return r;
    return drain(e, cb, user);
}
