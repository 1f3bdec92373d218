/*
 * Opens libavcodec, libavutil and libswscale (by the sonames of the headers' major
 * versions) for the in-process AAC encoder and video decoder, and routes the libraries'
 * messages: nothing is printed on undertone's stderr; an error a decoder's codec reports
 * is recorded on that decoder (struct ut_log_sink), which is how a damaged stream is told
 * from a clean one, as ffmpeg's `-v error` output told it before.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "lavc.h"

#define UT_STR2(x) #x
#define UT_STR(x) UT_STR2(x)
#define UT_LAVC_SONAME "libavcodec.so." UT_STR(LIBAVCODEC_VERSION_MAJOR)
#define UT_LAVU_SONAME "libavutil.so." UT_STR(LIBAVUTIL_VERSION_MAJOR)
#define UT_SWS_SONAME "libswscale.so." UT_STR(LIBSWSCALE_VERSION_MAJOR)

struct ut_lavc_api ut_api;

static const AVClass *codec_class;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_callback(void *avcl, int level, const char *fmt, va_list vl)
{
    if (level > AV_LOG_ERROR || !avcl || *(const AVClass **)avcl != codec_class)
        return;
    struct ut_log_sink *sink = ((AVCodecContext *)avcl)->opaque;
    if (!sink)
        return;
    char line[sizeof sink->last];
    vsnprintf(line, sizeof line, fmt, vl);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' '))
        line[--n] = '\0';
    pthread_mutex_lock(&log_lock);
    sink->errors++;
    memcpy(sink->last, line, n + 1);
    pthread_mutex_unlock(&log_lock);
}

/* Opens the three libraries and finds every function; 0, or -1 with the reason in err. */
int ut_lavc_load(char *err, size_t err_len)
{
    void *lavc = dlopen(UT_LAVC_SONAME, RTLD_NOW | RTLD_LOCAL);
    void *lavu = lavc ? dlopen(UT_LAVU_SONAME, RTLD_NOW | RTLD_LOCAL) : NULL;
    void *sws = lavu ? dlopen(UT_SWS_SONAME, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (!sws) {
        snprintf(err, err_len, "%s", dlerror());
        return -1;
    }
#define UT_SYM(lib, soname, field, name)                                                  \
    do {                                                                                   \
        *(void **)(&ut_api.field) = dlsym(lib, name);                                      \
        if (!ut_api.field) {                                                               \
            snprintf(err, err_len, "%s has no %s", soname, name);                          \
            return -1;                                                                     \
        }                                                                                  \
    } while (0)
#define UT_LAVC(field, name) UT_SYM(lavc, UT_LAVC_SONAME, field, name)
#define UT_LAVU(field, name) UT_SYM(lavu, UT_LAVU_SONAME, field, name)
#define UT_SWS(field, name) UT_SYM(sws, UT_SWS_SONAME, field, name)
    UT_LAVC(find_encoder_by_name, "avcodec_find_encoder_by_name");
    UT_LAVC(find_decoder_by_name, "avcodec_find_decoder_by_name");
    UT_LAVC(alloc_context3, "avcodec_alloc_context3");
    UT_LAVC(open2, "avcodec_open2");
    UT_LAVC(send_frame, "avcodec_send_frame");
    UT_LAVC(receive_packet, "avcodec_receive_packet");
    UT_LAVC(send_packet, "avcodec_send_packet");
    UT_LAVC(receive_frame, "avcodec_receive_frame");
    UT_LAVC(free_context, "avcodec_free_context");
    UT_LAVC(codec_get_class, "avcodec_get_class");
    UT_LAVC(packet_alloc, "av_packet_alloc");
    UT_LAVC(packet_free, "av_packet_free");
    UT_LAVC(packet_unref, "av_packet_unref");
    UT_LAVC(avcodec_version, "avcodec_version");
    UT_LAVU(frame_alloc, "av_frame_alloc");
    UT_LAVU(frame_free, "av_frame_free");
    UT_LAVU(frame_unref, "av_frame_unref");
    UT_LAVU(frame_get_buffer, "av_frame_get_buffer");
    UT_LAVU(frame_make_writable, "av_frame_make_writable");
    UT_LAVU(opt_set, "av_opt_set");
    UT_LAVU(strerror, "av_strerror");
    UT_LAVU(log_set_level, "av_log_set_level");
    UT_LAVU(log_set_callback, "av_log_set_callback");
    UT_LAVU(mallocz, "av_mallocz");
    UT_LAVU(avutil_version, "avutil_version");
#if UT_CH_LAYOUT
    UT_LAVU(channel_layout_default, "av_channel_layout_default");
#endif
    UT_SWS(sws_get_context, "sws_getContext");
    UT_SWS(sws_scale, "sws_scale");
    UT_SWS(sws_free_context, "sws_freeContext");
    UT_SWS(sws_get_colorspace_details, "sws_getColorspaceDetails");
    UT_SWS(sws_set_colorspace_details, "sws_setColorspaceDetails");
    UT_SWS(swscale_version, "swscale_version");
#undef UT_LAVC
#undef UT_LAVU
#undef UT_SWS
#undef UT_SYM
    /*
     * Within a major version fields are only ever added at the end of a struct, so a library
     * at least as new as the headers has every field this code sets (an older 59, FFmpeg 5.0,
     * has no AVCodecContext.ch_layout: setting it would write past the struct).
     */
    unsigned lavc_v = ut_api.avcodec_version(), lavu_v = ut_api.avutil_version(),
             sws_v = ut_api.swscale_version();
    if (lavc_v < LIBAVCODEC_VERSION_INT || lavu_v < LIBAVUTIL_VERSION_INT
        || sws_v < LIBSWSCALE_VERSION_INT) {
        snprintf(err, err_len,
                 "libavcodec %u.%u, libavutil %u.%u or libswscale %u.%u is older than the "
                 "%d.%d, %d.%d and %d.%d this build was made against",
                 lavc_v >> 16, (lavc_v >> 8) & 0xFF, lavu_v >> 16, (lavu_v >> 8) & 0xFF,
                 sws_v >> 16, (sws_v >> 8) & 0xFF, LIBAVCODEC_VERSION_MAJOR,
                 LIBAVCODEC_VERSION_MINOR, LIBAVUTIL_VERSION_MAJOR, LIBAVUTIL_VERSION_MINOR,
                 LIBSWSCALE_VERSION_MAJOR, LIBSWSCALE_VERSION_MINOR);
        return -1;
    }
    codec_class = ut_api.codec_get_class();
    ut_api.log_set_level(AV_LOG_ERROR);
    ut_api.log_set_callback(log_callback);
    return 0;
}

/* The libraries' sonames, for messages. */
const char *ut_lavc_libraries(void)
{
    return UT_LAVC_SONAME ", " UT_LAVU_SONAME " and " UT_SWS_SONAME;
}

/* The text of a libav error code. */
void ut_lavc_strerror(int code, char *buf, size_t len)
{
    if (ut_api.strerror(code, buf, len) < 0)
        snprintf(buf, len, "error %d", code);
}
