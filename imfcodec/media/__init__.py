"""Pictures and video through FFmpeg (PyAV): reading and writing video files
(:mod:`.video`), the keyframe codecs (:mod:`.keyframe`) and the base layer's VP9 pictures
(:mod:`.baselayer`). Knows nothing of the networks or the container."""
