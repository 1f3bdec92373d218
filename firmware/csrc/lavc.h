/*
 * The libavcodec, libavutil and libswscale functions undertone calls, opened with dlopen
 * (lavc.c) and shared by the in-process AAC encoder (aacenc.c) and video decoder
 * (videodec.c). See firmware/src/lavc.rs for why they are opened, not linked.
 */
#ifndef UNDERTONE_LAVC_H
#define UNDERTONE_LAVC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <libavcodec/avcodec.h>
#include <libavutil/channel_layout.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

/* AVChannelLayout replaced the channel mask and count in libavutil 57.24 (FFmpeg 5.1). */
#if LIBAVUTIL_VERSION_INT >= AV_VERSION_INT(57, 24, 100)
#define UT_CH_LAYOUT 1
#else
#define UT_CH_LAYOUT 0
#endif

struct ut_lavc_api {
    /* libavcodec */
    const AVCodec *(*find_encoder_by_name)(const char *);
    const AVCodec *(*find_decoder_by_name)(const char *);
    AVCodecContext *(*alloc_context3)(const AVCodec *);
    int (*open2)(AVCodecContext *, const AVCodec *, AVDictionary **);
    int (*send_frame)(AVCodecContext *, const AVFrame *);
    int (*receive_packet)(AVCodecContext *, AVPacket *);
    int (*send_packet)(AVCodecContext *, const AVPacket *);
    int (*receive_frame)(AVCodecContext *, AVFrame *);
    void (*free_context)(AVCodecContext **);
    const AVClass *(*codec_get_class)(void);
    AVPacket *(*packet_alloc)(void);
    void (*packet_free)(AVPacket **);
    void (*packet_unref)(AVPacket *);
    unsigned (*avcodec_version)(void);
    /* libavutil */
    AVFrame *(*frame_alloc)(void);
    void (*frame_free)(AVFrame **);
    void (*frame_unref)(AVFrame *);
    int (*frame_get_buffer)(AVFrame *, int);
    int (*frame_make_writable)(AVFrame *);
    int (*opt_set)(void *, const char *, const char *, int);
    int (*strerror)(int, char *, size_t);
    void (*log_set_level)(int);
    void (*log_set_callback)(void (*)(void *, int, const char *, va_list));
    void *(*mallocz)(size_t);
    unsigned (*avutil_version)(void);
#if UT_CH_LAYOUT
    void (*channel_layout_default)(AVChannelLayout *, int);
#endif
    /* libswscale */
    struct SwsContext *(*sws_get_context)(int, int, enum AVPixelFormat, int, int,
                                          enum AVPixelFormat, int, SwsFilter *, SwsFilter *,
                                          const double *);
    int (*sws_scale)(struct SwsContext *, const uint8_t *const[], const int[], int, int,
                     uint8_t *const[], const int[]);
    void (*sws_free_context)(struct SwsContext *);
    int (*sws_get_colorspace_details)(struct SwsContext *, int **, int *, int **, int *, int *,
                                      int *, int *);
    int (*sws_set_colorspace_details)(struct SwsContext *, const int[4], int, const int[4], int,
                                      int, int, int);
    unsigned (*swscale_version)(void);
};

extern struct ut_lavc_api ut_api;

/* A decoder's record of the errors its codec reported (see the log callback in lavc.c):
 * the first member of the struct a decoding context's `opaque` points to. */
struct ut_log_sink {
    int errors;
    char last[256];
};

#endif
