// Test-build-only shim: the generated client (clients/kotlin) is written against the OkHttp 4+
// Kotlin API, but the only OkHttp available offline here is Debian's 3.13 (libokhttp-java).
// contract/kotlin-smoke/run.sh compiles a copy of the client in which the
// `import okhttp3.X.Companion.y` lines are dropped; this file, in the client's infrastructure
// package, supplies those extension functions and the property-style accessors (`code`, `body`,
// `headers`, `message`) on top of 3.13. The shipped client is never modified.
@file:Suppress("unused")

package com.phonemanager.client.infrastructure

import java.io.File
import okhttp3.Headers
import okhttp3.HttpUrl
import okhttp3.MediaType
import okhttp3.RequestBody
import okhttp3.ResponseBody

// okhttp3.MediaType.Companion
fun String.toMediaTypeOrNull(): MediaType? = MediaType.parse(this)

fun String.toMediaType(): MediaType = MediaType.get(this)

// okhttp3.HttpUrl.Companion
fun String.toHttpUrlOrNull(): HttpUrl? = HttpUrl.parse(this)

fun String.toHttpUrl(): HttpUrl = HttpUrl.get(this)

// okhttp3.Headers.Companion
fun Map<String, String>.toHeaders(): Headers = Headers.of(this)

// okhttp3.RequestBody.Companion
fun ByteArray.toRequestBody(contentType: MediaType? = null): RequestBody =
    RequestBody.create(contentType, this)

fun String.toRequestBody(contentType: MediaType? = null): RequestBody =
    RequestBody.create(contentType, this)

fun File.asRequestBody(contentType: MediaType? = null): RequestBody =
    RequestBody.create(contentType, this)

// OkHttp 4 turned these Java accessor methods into Kotlin properties.
val okhttp3.Response.code: Int
    get() = code()

val okhttp3.Response.message: String
    get() = message()

val okhttp3.Response.headers: Headers
    get() = headers()

val okhttp3.Response.body: ResponseBody?
    get() = body()
