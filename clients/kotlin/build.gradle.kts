// Hand-kept build of the generated client (listed in contract/openapi-generator/kotlin-client.ignore,
// so scripts/generate-clients.sh never overwrites it; it only keeps `version` equal to the
// contract's info.version). Not built in this repository's CI, which has no Gradle and no Maven
// Central: contract/kotlin-smoke/run.sh compiles the same sources with kotlinc using the same
// compiler options (Kotlin 2.2 language/API version, JVM 1.8, serialization plugin).

import org.jetbrains.kotlin.gradle.dsl.JvmTarget
import org.jetbrains.kotlin.gradle.dsl.KotlinVersion

plugins {
    // The compiler that builds the library. Any Kotlin >= 2.2 works here because of
    // languageVersion/apiVersion below; 2.2.21 is what the smoke test compiles it with too.
    kotlin("jvm") version "2.2.21"
    kotlin("plugin.serialization") version "2.2.21"
    `java-library`
    `maven-publish`
}

group = "com.phonemanager"
version = "1.0.0"

repositories {
    mavenCentral()
}

kotlin {
    compilerOptions {
        // Class files carry Kotlin 2.2 metadata and call only 2.2 stdlib API, so an app on
        // Kotlin 2.2.x can link them (2.4 metadata would not load there) and any newer Kotlin can.
        languageVersion.set(KotlinVersion.KOTLIN_2_2)
        apiVersion.set(KotlinVersion.KOTLIN_2_2)
        // Android's D8/R8 and every JVM take Java 8 bytecode.
        jvmTarget.set(JvmTarget.JVM_1_8)
    }
    // The Kotlin plugin adds kotlin-stdlib by itself; this makes that dependency 2.2.0, a floor:
    // Gradle resolves it to the app's own (newer or equal) stdlib, so the app decides the stdlib
    // version, not this library.
    coreLibrariesVersion = "2.2.0"
}

java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
    withSourcesJar()
}

dependencies {
    // `api`: OkHttp types are part of the public API (every *Api class takes an
    // okhttp3.Call.Factory, e.g. the app's OkHttpClient). 4.12 is the floor; OkHttp 5 keeps the
    // same API and wins if the app uses it.
    api("com.squareup.okhttp3:okhttp:4.12.0")
    // `api`: the models are @Serializable and Serializer.kotlinxSerializationJson /
    // kotlinxSerializationAdapters are public, so apps (e.g. a Ktor client decoding the same
    // models) compile against kotlinx-serialization. 1.9.0 is the runtime that goes with the
    // Kotlin 2.2 serialization plugin; a newer one from the app wins.
    api("org.jetbrains.kotlinx:kotlinx-serialization-json:1.9.0")
    // `api` as well: a `suspend fun` alone needs no coroutines library, but ApiClient's
    // protected inline `request` (inlined into any subclass, including an app's) calls
    // suspendCancellableCoroutine. 1.8.0 is the version compiled and tested against here; the
    // app's newer one wins.
    api("org.jetbrains.kotlinx:kotlinx-coroutines-core:1.8.0")
    // Nothing is compileOnly: the stdlib is provided by the app's Kotlin plugin anyway (see
    // coreLibrariesVersion), and everything else is needed at run time, so declaring it here
    // spares the app from adding it by hand.
}

// R8/ProGuard rules for the models (proguard-rules.pro, generated) ship inside the jar, where
// R8 (Android Gradle Plugin) and ProGuard pick them up without any app configuration.
tasks.jar {
    from("proguard-rules.pro") {
        into("META-INF/proguard")
        rename { "phone-manager-client.pro" }
    }
}

publishing {
    publications {
        create<MavenPublication>("maven") {
            artifactId = "phone-manager-client"
            from(components["java"])
        }
    }
}
