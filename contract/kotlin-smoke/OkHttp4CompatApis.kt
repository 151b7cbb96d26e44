// Test-build-only shim (see OkHttp4Compat.kt): the OkHttp 4 property accessors the generated
// API classes use, declared in their package so that they resolve without an import.
@file:Suppress("unused")

package com.phonemanager.client.apis

import okhttp3.HttpUrl

val HttpUrl.encodedPathSegments: List<String>
    get() = encodedPathSegments()
